"""Limits on a request's head, enforced on the connection before the app sees the request.

uvicorn's httptools protocol buffers a request line and headers of any size, and waits for them
for as long as the client keeps the connection open. Behind this subclass, a head must arrive
within `header_timeout_ms`, in at most `max_header_bytes`, with at most `max_headers` headers.
Otherwise the answer is 408, 414 or 431 in our error body, and the connection closes. Bytes are
counted as they arrive, so a 256 MB header costs at most one read beyond the limit. Each refusal
is logged once and counted, as the Guard does for the refusals it makes.

The body's limits (size, how long it may take) are the Guard's, which reads the whole body
before a request takes an admission slot.

Overload is refused here too, as soon as an inference request's head is in: the same admission
check as the Guard's (`guard.Admission`), answered with a prepared 503 and no ASGI task, and the
body that follows is skipped on a connection that stays open. That is what keeps a refusal far
cheaper than the work it refuses (`make bench`, the overload table).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from recmodel_handlers.errors import (
    HeadTimeout,
    HeadTooLarge,
    Overloaded,
    ServingError,
    TooManyConnections,
    UriTooLong,
)
from recmodel_handlers.serving import metrics as m
from recmodel_handlers.serving.guard import INFERENCE_SUFFIXES, ServerState, log_refusal, route_of
from recmodel_handlers.settings import ServerSettings

_INFERENCE = tuple(suffix.encode() for suffix in INFERENCE_SUFFIXES)


def raw_response(error: ServingError, *, close: bool) -> bytes:
    """The whole HTTP/1.1 response for a refusal, in our error body."""
    body = error.body()
    head = [f"HTTP/1.1 {error.status} {error.phrase}".encode()]
    head += [b"content-type: application/json", f"content-length: {len(body)}".encode()]
    head += [b"connection: close"] if close else []
    head += [f"{name}: {value}".encode("latin-1") for name, value in error.headers().items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class LimitedHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    settings: ClassVar[ServerSettings] = ServerSettings()
    state: ClassVar[ServerState] = ServerState()  # the server's: admission, draining, the model's name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = self._header_bytes = 0
        self._refused = False
        self._skipping = False  # the body of a request refused as busy
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the connection: at most `max_connections`, and a first head that starts at once ---------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.settings.max_connections:
            self._refuse(TooManyConnections(self.settings.max_connections))
            return
        # A connection that sends nothing holds a socket as surely as a slow head: its clock runs
        # from the start (later heads on a kept-alive connection start theirs at their first byte).
        self._start_head_timer()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.settings.header_timeout_ms / 1000, self._head_timed_out)

    # -- the head's clock: from its first byte to its last ---------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._start_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._refused and self._in_head and self._head_bytes > self.settings.max_header_bytes:
            self._refuse(HeadTooLarge(self.settings.max_header_bytes))

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self._refused:
            self._refuse(HeadTimeout(self.settings.header_timeout_ms / 1000))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        super().on_url(url)
        if len(self.url) > self.settings.max_header_bytes:
            self._refuse(UriTooLong(self.settings.max_header_bytes))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.settings.max_headers:
            self._refuse(HeadTooLarge(self.settings.max_header_bytes, self.settings.max_headers))
            return
        if self._header_bytes + len(self.url) > self.settings.max_header_bytes:  # a head that arrived in one read
            self._refuse(HeadTooLarge(self.settings.max_header_bytes))
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._cancel_head_timer()
        if not self._shed():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not (self._refused or self._skipping):
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head, self._head_bytes = True, 0  # what comes next is the next request's head
        if self._skipping:  # no cycle of its own: the connection waits for the next request
            self._skipping = False
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            return
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # -- refusals ----------------------------------------------------------------------------------
    def _shed(self) -> bool:
        """Refuses an inference request as busy from its head alone, when admission says so."""
        state = self.state
        path = self.url.split(b"?", 1)[0]
        if state.draining or self.parser.get_method() != b"POST" or not path.endswith(_INFERENCE):
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # a pipelined request: the Guard answers it in turn
        try:
            state.check_admission(self.settings)
        except Overloaded as busy:
            state.rejected_busy += 1
            # A client that waits for "100 Continue" sends no body now: close rather than guess.
            keep_alive = self.parser.should_keep_alive() and not self.expect_100_continue
            self.transport.write(raw_response(busy, close=not keep_alive))
            self._skipping = keep_alive
            if not keep_alive:
                self._refused = True
                self.transport.close()
            self._count(busy, "POST", path.decode("latin-1", "replace"))
            return True
        return False

    def _refuse(self, error: ServingError) -> None:
        self._refused = True
        self._cancel_head_timer()
        self.transport.write(raw_response(error, close=True))
        self.transport.close()
        url = getattr(self, "url", b"")  # uvicorn sets it once a request begins
        self._count(error, "-", url.split(b"?", 1)[0].decode("latin-1", "replace") if url else "")

    def _count(self, error: ServingError, method: str, path: str) -> None:
        m.RESPONSES.labels(model=self.state.model, route=route_of(path), code=str(error.status)).inc()
        log_refusal(error.status, method, path, _request_id(self.headers or []), str(error))


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    return next((value.decode("latin-1") for name, value in headers if name == b"x-request-id"), "-")


def protocol_for(settings: ServerSettings, state: ServerState) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn instantiates per connection, with these limits and this state."""
    return type("RecModelHttpProtocol", (LimitedHttpProtocol,), {"settings": settings, "state": state})
