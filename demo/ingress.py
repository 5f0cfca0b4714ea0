"""A tiny ingress for the demo: routes requests by Host header, using the Ingress objects the
operator rendered, to model servers running as local processes.

Like an ingress controller in front of a Service's endpoints, it sends each request to one
*ready* replica (round robin); readiness is each server's own `/v2/health/ready`, polled
as a kubelet would, so a draining replica stops getting traffic. A request that cannot
connect is tried on the next ready replica (nginx's `proxy_next_upstream error`); one that
reached a replica is never sent twice.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devcluster.ports import free_ports

PROBE_PERIOD = 0.2


class Upstreams:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.ready: set[str] = set(urls)
        self._turn = itertools.count()

    def order(self) -> list[str]:
        """Ready replicas, starting at the next one in turn (every replica if none is ready)."""
        live = [u for u in self.urls if u in self.ready] or self.urls
        start = next(self._turn) % len(live)
        return live[start:] + live[:start]


def build_app(routes: dict[str, list[str]]) -> Starlette:
    """routes: host -> upstream base URLs (the Service's endpoints). The lists are read live:
    a caller may add and remove endpoints while it runs, as EndpointSlices change."""
    client = httpx.AsyncClient(timeout=30)
    upstreams = {host: Upstreams(urls) for host, urls in routes.items()}

    async def probe() -> None:
        while True:
            for group in upstreams.values():
                for url in group.urls:
                    try:
                        ok = (await client.get(f"{url}/v2/health/ready", timeout=1)).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    (group.ready.add if ok else group.ready.discard)(url)
            await asyncio.sleep(PROBE_PERIOD)

    async def forward(request: Request) -> Response:
        host = request.headers.get("host", "").split(":")[0]
        group = upstreams.get(host)
        if group is None:
            return Response(f"no Ingress rule for host {host!r}\n", status_code=404)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        failure: Exception | None = None
        for upstream in group.order():
            try:
                reply = await client.request(
                    request.method, f"{upstream}{request.url.path}", content=body, headers=headers
                )
            except httpx.ConnectError as error:  # never reached the replica: safe to try the next
                failure = error
                continue
            passed = {k: v for k, v in reply.headers.items() if k.lower() in ("content-type", "retry-after")}
            return Response(reply.content, status_code=reply.status_code, headers=passed)
        return Response(f"no replica reachable: {failure}\n", status_code=502)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(probe())
        yield
        task.cancel()

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])], lifespan=lifespan)


@contextmanager
def running_ingress(routes: dict[str, list[str]]) -> Iterator[str]:
    (port,) = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(build_app(routes), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
