"""What protects a replica, as one ASGI middleware in front of the model server's app.

(The request's head is limited earlier, on the connection: `serving.connection`.)

- Body: a declared Content-Length over the limit is refused before reading; a chunked body is
  counted as it streams (both 413). An inference request's whole body is read before it takes
  an admission slot, within `body_timeout_ms` (408): a client that sends slowly holds its own
  connection, never a slot another request could use. A compressed body is refused (415).
- Admission: at most `max_queue` inference requests are inside the server at once (parsing,
  waiting for a batch, scoring). One more is answered 503 with Retry-After at once, so a
  client or load balancer can go elsewhere instead of queueing behind work the replica can
  never finish in time.
- Deadline: each inference request has one (`x-request-timeout-ms`, capped by the server's
  default); when it passes, its work is dropped and the answer is 504.
- Drain: after SIGTERM every response says `connection: close`, so keep-alive clients move
  to other replicas while this one still answers.
- One log line per rejected request: status, method, path, request id and the error, never
  the body, client text quoted so that it cannot start a line of its own.
- Every response is counted by route and code (`recmodel_http_responses_total`), refusals
  included: what the canary analysis and the alerts read error rates from.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from recmodel_handlers.errors import (
    BodyTimeout,
    BodyTooLarge,
    DeadlineExceeded,
    InternalError,
    Overloaded,
    RequestError,
    ServingError,
    UnsupportedEncoding,
)
from recmodel_handlers.serving import metrics as m
from recmodel_handlers.settings import ServerSettings

log = logging.getLogger("recmodel.requests")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

TIMEOUT_HEADER = b"x-request-timeout-ms"
ERROR_KEY = "recmodel.error"  # scope key where error handlers leave the message for the log line
DEADLINE_KEY = "recmodel.deadline"  # scope key: time.monotonic() by which the request must be answered


class Throughput:
    """Requests answered per second of busy time (time with at least one request inside): the
    replica's real capacity, whatever it is spent on (parsing and encoding on the event loop,
    scoring, the GIL between them), which no per-stage timer adds up. A newcomer behind n
    requests waits about n / capacity. Old history fades (halved every 256 answers)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answered = 0.0
        self._busy = 0.0
        self._busy_since: float | None = None

    def started(self, inside_before: int) -> None:
        if inside_before == 0:
            self._busy_since = self._clock()

    def finished(self, inside_after: int) -> None:
        self._answered += 1
        if inside_after == 0 and self._busy_since is not None:
            self._busy += self._clock() - self._busy_since
            self._busy_since = None
        if self._answered >= 256:
            self._answered, self._busy = self._answered / 2, self._busy / 2

    def wait(self, inside: int) -> float:
        """Seconds a newcomer would wait behind `inside` requests (0 until measured)."""
        busy = self._busy + (self._clock() - self._busy_since if self._busy_since is not None else 0.0)
        if self._answered < 8 or busy <= 0:
            return 0.0
        return inside * busy / self._answered


class StandingQueue:
    """The fewest requests inside the server at any moment of the last interval (CoDel's idea):
    a burst comes and goes within it, overload keeps the replica busy through it. Only then does
    the replica refuse work, so bursts at moderate load are absorbed."""

    INTERVAL = 0.025  # a few requests' service time: CoDel's 100 ms is scaled to network round trips

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._current = 0
        self._previous = 0

    def observe(self, inside: int) -> None:
        now = self._clock()
        if now - self._start > self.INTERVAL:
            self._previous, self._current, self._start = self._current, inside, now
        else:
            self._current = min(self._current, inside)

    @property
    def depth(self) -> int:
        return min(self._previous, self._current)


@dataclass
class Admission:
    """Whether one more inference request may come in: asked on the connection as soon as a
    request's head has arrived (`serving.connection`, so that overload is refused without
    reading the body or starting the app: a refusal must cost far less than the work), and by
    the Guard once the body is in, for the slot itself."""

    throughput: Throughput = field(default_factory=Throughput)
    standing: StandingQueue = field(default_factory=StandingQueue)
    inside: int = 0  # inference requests holding a slot

    def check(self, settings: ServerSettings, models: Callable[[], None]) -> None:
        """Raises Overloaded when a newcomer would wait too long, or no slot is free."""
        # Once the replica has been busy for a whole interval (a standing queue, not a burst),
        # a newcomer may wait behind at most one request's worth of work, or the budget if
        # that is longer (slow models would otherwise never overlap two requests).
        self.standing.observe(self.inside)
        wait = self.throughput.wait(self.inside)
        allowed = max(settings.max_queue_ms / 1000, self.throughput.wait(1))
        if self.standing.depth > 0 and wait > allowed:
            raise Overloaded(wait, allowed)
        if self.inside >= settings.max_queue:
            raise Overloaded(0.0, 0.0, f"busy: {self.inside} requests in progress, the limit is {settings.max_queue}")
        # The models' own check: scoring work queued in the batcher (candidates at the measured
        # scoring rate), not gated by the standing queue. It curbs the bursts the gate lets in:
        # without it accepted p99 at 4x load measured 57 ms instead of about 32
        # (tests/serving/test_load.py).
        models()

    def entered(self) -> None:
        self.throughput.started(self.inside)
        self.inside += 1

    def left(self) -> None:
        self.inside -= 1
        self.throughput.finished(self.inside)
        self.standing.observe(self.inside)


@dataclass
class ServerState:
    """Shared by the connections, the middleware, the routes and the signal handler."""

    draining: bool = False
    model: str = ""  # the served model's name, a label of every response counted
    admit: Callable[[], None] = field(default=lambda: None)  # raises Overloaded (the models' queues)
    admission: Admission = field(default_factory=Admission)
    rejected_busy: int = 0
    expired: int = 0

    def check_admission(self, settings: ServerSettings) -> None:
        self.admission.check(settings, self.admit)


INFERENCE_SUFFIXES = ("/infer", ":predict", ":explain")
ROUTES = ((":predict", "predict"), (":explain", "explain"), ("/infer", "infer"), ("/ready", "ready"), ("/live", "live"))


def route_of(path: str) -> str:
    """A bounded label for a path (the metrics must not grow with what clients send)."""
    for suffix, route in ROUTES:
        if path.endswith(suffix):
            return route
    if path == "/metrics":
        return "metrics"
    if path.startswith(("/v1/models", "/v2")):
        return "metadata"
    return "other"


class _Disconnected(Exception):
    """The client went away before its body arrived."""


def is_inference(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return scope.get("method") == "POST" and path.endswith(INFERENCE_SUFFIXES)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def deadline_seconds(scope: Scope, default_ms: float) -> float:
    """Seconds the request may take; RequestError when the header is not a deadline."""
    raw = _header(scope, TIMEOUT_HEADER)
    if raw is None:
        return default_ms / 1000.0
    field = f"header {TIMEOUT_HEADER.decode()}"
    try:
        asked = float(raw)
    except ValueError:
        raise RequestError(field, f"must be milliseconds, got {raw[:40]!r}") from None
    if not math.isfinite(asked) or asked <= 0:
        raise RequestError(field, "must be a positive number of milliseconds")
    return min(asked, default_ms) / 1000.0


class Guard:
    def __init__(self, app: App, settings: ServerSettings, state: ServerState) -> None:
        self.app = app
        self.settings = settings
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        status = 0

        async def tracked_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                if self.state.draining:
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        async def reply(error: ServingError) -> None:
            scope[ERROR_KEY] = str(error)
            body = error.body()
            await tracked_send(
                {
                    "type": "http.response.start",
                    "status": error.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *((k.encode(), v.encode()) for k, v in error.headers().items()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        try:
            await self._guarded(scope, receive, tracked_send, reply)
        except _Disconnected:
            pass
        except BodyTooLarge as error:
            if not started:
                await reply(error)
        except Exception as error:  # a failure of ours that no handler answered: one 500, one traceback
            log.error("%s %s failed", scope.get("method"), _quoted(str(scope.get("path", ""))[:200]), exc_info=error)
            if not started:
                await reply(InternalError(error))
        finally:
            route = route_of(scope.get("path", ""))
            m.RESPONSES.labels(model=self.state.model, route=route, code=str(status or 499)).inc()
            if status >= 400 or not started:
                self._log_rejection(scope, status or 499)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, reply: Callable[[ServingError], Awaitable[None]]
    ) -> None:
        limit = self.settings.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await reply(BodyTooLarge(limit))
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        if not is_inference(scope):
            await self.app(scope, counted_receive, send)
            return
        encoding = _header(scope, b"content-encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            await reply(UnsupportedEncoding(encoding))
            return
        try:
            deadline = deadline_seconds(scope, self.settings.request_timeout_ms)
            # Twice: before the body is read (the connection asked already, for a head that came
            # through it), and once it is in, for the slot itself: a client that sends its body
            # slowly never holds a slot.
            self.state.check_admission(self.settings)
            body = await self._read_body(counted_receive)
            self.state.check_admission(self.settings)
        except Overloaded as busy:
            self.state.rejected_busy += 1
            await reply(busy)
            return
        except (RequestError, BodyTimeout) as error:
            await reply(error)
            return
        replay = _replaying(body, receive)
        self.state.admission.entered()
        responded = False

        async def deadline_send(message: Message) -> None:
            nonlocal responded
            responded = True
            await send(message)

        scope[DEADLINE_KEY] = time.monotonic() + deadline
        try:
            async with asyncio.timeout(deadline):
                await self.app(scope, replay, deadline_send)
        except TimeoutError:
            self.state.expired += 1
            if not responded:
                await reply(DeadlineExceeded(deadline))
        finally:
            self.state.admission.left()

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, within its time limit (the size limit is `receive`'s)."""
        chunks: list[bytes] = []
        seconds = self.settings.body_timeout_ms / 1000
        try:
            async with asyncio.timeout(seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected()
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        return b"".join(chunks)
        except TimeoutError:
            raise BodyTimeout(seconds) from None

    @staticmethod
    def _log_rejection(scope: Scope, status: int) -> None:
        request_id = _header(scope, b"x-request-id") or scope.get("recmodel.request_id") or "-"
        log_refusal(
            status,
            str(scope.get("method", "")),
            str(scope.get("path", "")),
            str(request_id),
            str(scope.get(ERROR_KEY, "")),
        )


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body read already, as the app's first message; then what the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def log_refusal(status: int, method: str, path: str, request_id: str, error: str) -> None:
    """One line per refusal. Client-controlled text is quoted (JSON strings), so a CR/LF in it
    cannot start a line of its own."""
    log.warning(
        "rejected status=%d method=%s path=%s request_id=%s error=%s",
        status,
        _quoted(method[:16]),
        _quoted(path[:200]),
        _quoted(request_id[:64]),
        _quoted(error[:300]),
    )


def _quoted(text: str) -> str:
    return orjson.dumps(text).decode()
