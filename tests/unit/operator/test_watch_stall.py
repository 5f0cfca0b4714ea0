"""A watch whose connection stays open but delivers nothing is noticed and replaced: real sockets,
an HTTP server that answers one list and then holds every watch silent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from recmodel_operator import metrics
from recmodel_operator.cache import Cache, Source
from recmodel_operator.informer import Informer
from recmodel_operator.kinds import DEPLOYMENT
from recmodel_operator.kube import ApiError, Kube


class _SilentApi(BaseHTTPRequestHandler):
    """Lists answer at once; a watch sends one bookmark, then nothing until the test ends."""

    protocol_version = "HTTP/1.1"
    lists = 0
    watches = 0
    release = threading.Event()

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        if "watch=true" not in self.path:
            type(self).lists += 1
            body = json.dumps({"items": [], "metadata": {"resourceVersion": "7"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        type(self).watches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        bookmark = json.dumps({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "8"}}}).encode() + b"\n"
        self.wfile.write(f"{len(bookmark):x}\r\n".encode() + bookmark + b"\r\n")
        self.wfile.flush()
        self.release.wait(30)


@pytest.fixture
def silent_api() -> Iterator[Kube]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SilentApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    _SilentApi.lists = _SilentApi.watches = 0
    _SilentApi.release.clear()
    try:
        yield Kube(client.ApiClient(configuration))
    finally:
        _SilentApi.release.set()
        server.shutdown()


def test_a_silent_watch_raises_stalled_after_its_silence_limit(silent_api: Kube) -> None:
    started = time.monotonic()
    events = silent_api.watch(DEPLOYMENT, "7", silence_seconds=0.5)
    assert next(events)["type"] == "BOOKMARK"
    with pytest.raises(ApiError) as raised:
        next(events)
    assert raised.value.stalled and raised.value.temporary
    assert "nothing received for" in raised.value.message
    assert 0.5 <= time.monotonic() - started < 5


def test_the_informer_replaces_a_stalled_watch_and_counts_it(silent_api: Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recmodel_operator.informer.STALL_SECONDS", 0.3)
    source = Source("stall-test", DEPLOYMENT)
    stop = threading.Event()
    informer = Informer(silent_api, Cache(), source, lambda *_: None, lambda _k: True, threading.Condition(), stop)
    stalls = metrics.WATCH_STALLS.labels(source=source.name)
    before = stalls._value.get()
    informer.start()
    try:
        deadline = time.monotonic() + 10
        while _SilentApi.watches < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
    assert _SilentApi.watches >= 3, "the stalled watch was not replaced"
    assert _SilentApi.lists >= 2, "a replaced watch starts from a fresh list"
    assert stalls._value.get() - before >= 2
