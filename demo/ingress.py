"""A tiny ingress for the demo: routes requests by Host header, using the Ingress objects the
operator rendered, to model servers running as local processes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devcluster.ports import free_ports


def build_app(routes: dict[str, str]) -> Starlette:
    """routes: host -> upstream base URL."""
    client = httpx.AsyncClient(timeout=30)

    async def forward(request: Request) -> Response:
        host = request.headers.get("host", "").split(":")[0]
        upstream = routes.get(host)
        if upstream is None:
            return Response(f"no Ingress rule for host {host!r}\n", status_code=404)
        reply = await client.request(
            request.method,
            f"{upstream}{request.url.path}",
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        return Response(reply.content, status_code=reply.status_code, media_type=reply.headers.get("content-type"))

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


@contextmanager
def running_ingress(routes: dict[str, str]) -> Iterator[str]:
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
