"""Slow and heavy clients against a real `recmodel serve`, over real sockets: floods of headers,
huge headers, heads and bodies sent slowly, forged log lines, and every refusal counted. Each
fails on a server without the connection's limits (`serving.connection`) and the Guard's
body-first admission (`serving.guard`)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from devcluster.harness.servers import kserve_server, listening_pids, metric_total
from recmodel_handlers.tools.samples import make_request

V1 = "/v1/models/ranker:predict"
GOOD = {"instances": [make_request(20)]}
HEADER_TIMEOUT_MS = 1500
BODY_TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def served(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("hostile") / "serve.log"
    args = [f"--header-timeout-ms={HEADER_TIMEOUT_MS}", f"--body-timeout-ms={BODY_TIMEOUT_MS}", "--max-queue=8"]
    with kserve_server(trained_model, "ranker", log, extra_args=args) as url:
        yield url, log


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _good(url: str) -> int:
    return httpx.post(f"{url}{V1}", json=GOOD, timeout=30).status_code


def _answer(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _responses(url: str, code: str) -> float:
    return metric_total(httpx.get(f"{url}/metrics").text, "recmodel_http_responses_total", code=code)


def test_a_header_flood_is_refused_at_once_and_liveness_stays_fast(served: tuple[str, Path]) -> None:
    url, _ = served
    slowest = 0.0
    done = threading.Event()

    def probe() -> None:
        nonlocal slowest
        while not done.is_set():
            started = time.monotonic()
            assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for count in (20_000, 40_000):
            head = b"".join(b"x-h%d: v\r\n" % i for i in range(count))
            with socket.create_connection(_address(url)) as sock:
                started = time.monotonic()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused before it was all sent
                    sock.sendall(b"POST " + V1.encode() + b" HTTP/1.1\r\nhost: x\r\n" + head + b"\r\n")
                answer = _answer(sock)
                assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
                assert b"more than 100 headers" in answer
                assert time.monotonic() - started < 2
    finally:
        done.set()
        prober.join()
    assert slowest < 1.0, f"liveness took {slowest:.2f} s during the flood"
    assert _good(url) == 200


def test_a_huge_header_is_refused_without_buffering_it(served: tuple[str, Path]) -> None:
    url, _ = served
    (pid,) = listening_pids(_address(url)[1])
    before = psutil.Process(pid).memory_info().rss
    with socket.create_connection(_address(url)) as sock:
        sock.sendall(b"POST " + V1.encode() + b" HTTP/1.1\r\nhost: x\r\nx-big: ")
        sent = 0
        try:
            while sent < 64 * 2**20:  # the server should hang up long before this
                sock.sendall(b"a" * 2**20)
                sent += 2**20
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert sent < 16 * 2**20, f"{sent} bytes were accepted into one header"
    assert psutil.Process(pid).memory_info().rss - before < 32 * 2**20
    assert _good(url) == 200


def test_a_head_sent_slowly_times_out(served: tuple[str, Path]) -> None:
    url, _ = served
    with socket.create_connection(_address(url)) as sock:
        sock.sendall(b"POST " + V1.encode() + b" HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"headers: not received within" in answer
    assert time.monotonic() - started < HEADER_TIMEOUT_MS / 1000 + 2


def test_slow_bodies_hold_no_admission_slot(served: tuple[str, Path]) -> None:
    """Eight connections that send their headers and one byte of body would, before, have held
    all eight admission slots (--max-queue=8) until the deadline: every real request got 503."""
    url, _ = served
    slow = []
    for _ in range(8):
        sock = socket.create_connection(_address(url))
        sock.sendall(
            b"POST " + V1.encode() + b" HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{"
        )
        slow.append(sock)
    try:
        time.sleep(0.3)
        codes = [_good(url) for _ in range(10)]
        assert codes == [200] * 10, codes
        for sock in slow:
            answer = _answer(sock, timeout=BODY_TIMEOUT_MS / 1000 + 5)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"body: not received within" in answer
    finally:
        for sock in slow:
            sock.close()


def test_refusals_are_counted_by_code(served: tuple[str, Path]) -> None:
    url, _ = served
    before = {code: _responses(url, code) for code in ("400", "405", "413", "415", "431")}
    assert httpx.post(f"{url}{V1}", content=b"{not json", timeout=30).status_code == 400
    assert httpx.get(f"{url}{V1}", timeout=30).status_code == 405
    assert httpx.post(f"{url}{V1}", content=b"x" * (17 * 2**20), timeout=60).status_code == 413
    compressed = httpx.post(f"{url}{V1}", content=b"x", headers={"content-encoding": "gzip"}, timeout=30)
    assert compressed.status_code == 415
    assert httpx.post(f"{url}{V1}", json=GOOD, headers={f"x-{i}": "v" for i in range(150)}).status_code == 431
    after = {code: _responses(url, code) for code in before}
    assert {code: after[code] - before[code] for code in before} == dict.fromkeys(before, 1.0)


def test_client_text_cannot_forge_a_log_line(served: tuple[str, Path]) -> None:
    url, log = served
    before = log.stat().st_size
    forged = "\r\nrejected status=200 method=POST path=/fake request_id=x error=none"
    response = httpx.post(
        f"{url}/v1/models/ranker%0d%0aFORGED:predict", content=b"{}", headers={"x-request-id": "a b"}, timeout=30
    )
    assert response.status_code == 404
    v2 = httpx.post(
        f"{url}/v2/models/ranker/infer",
        json={"id": forged, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
    )
    assert v2.status_code == 400
    logged = log.read_bytes()[before:].decode(errors="replace").splitlines()
    refusals = [line for line in logged if "rejected status=" in line]
    assert len(refusals) == 2, logged
    assert not any(line.startswith(("FORGED", "rejected status=200")) for line in logged), logged
    assert "\\r\\n" in refusals[0] and "\\r\\n" in refusals[1]  # escaped, inside the quotes


def _one_response(sock: socket.socket, timeout: float = 10) -> tuple[bytes, bytes]:
    """(head, body) of the next response on a keep-alive connection."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head, rest[:length]


def test_a_busy_refusal_answers_from_the_head_and_keeps_the_connection(trained_model: Path, tmp_path: Path) -> None:
    """With no slot free (max-queue 0), a request is refused before its body is sent; the body
    that follows is skipped and the same connection serves the next request."""
    log = tmp_path / "serve.log"
    with kserve_server(trained_model, "ranker", log, extra_args=["--max-queue=0"]) as url:
        body = json.dumps(GOOD).encode()
        head = f"POST {V1} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        with socket.create_connection(_address(url)) as sock:
            for _ in range(3):
                sock.sendall(head.encode() + b"x-request-id: busy-1\r\n\r\n")  # the head only
                status, refusal = _one_response(sock)
                assert status.startswith(b"HTTP/1.1 503") and b"retry-after:" in status.lower(), status
                assert b"busy" in refusal
                sock.sendall(body)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            status, _ = _one_response(sock)
            assert status.startswith(b"HTTP/1.1 200"), status
        assert _responses(url, "503") == 3
        logged = log.read_text()
        assert "Traceback" not in logged
        assert logged.count("rejected status=503") == 3 and 'request_id="busy-1"' in logged


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(served: tuple[str, Path]) -> None:
    url, _ = served
    with socket.create_connection(_address(url)) as sock:
        started = time.monotonic()
        answer = _answer(sock, timeout=HEADER_TIMEOUT_MS / 1000 + 5)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEADER_TIMEOUT_MS / 1000 - 0.2 <= waited < HEADER_TIMEOUT_MS / 1000 + 2
    assert _good(url) == 200


def test_connections_beyond_the_limit_are_refused_at_once_and_the_rest_still_served(
    trained_model: Path, tmp_path: Path
) -> None:
    limit = 16
    args = [f"--max-connections={limit}", "--header-timeout-ms=2000"]
    with kserve_server(trained_model, "ranker", tmp_path / "serve.log", extra_args=args) as url:
        held = [socket.create_connection(_address(url)) for _ in range(limit)]
        try:
            time.sleep(0.2)
            with socket.create_connection(_address(url)) as extra:
                started = time.monotonic()
                answer = _answer(extra, timeout=5)
                assert time.monotonic() - started < 1
            assert answer.startswith(b"HTTP/1.1 503") and b"16 connections are open" in answer, answer[:300]
        finally:
            for sock in held:
                sock.close()
        wait = time.monotonic() + 5
        while _good(url) != 200 and time.monotonic() < wait:
            time.sleep(0.1)
        assert _good(url) == 200
        assert _responses(url, "503") >= 1
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
