"""The `recmodel serve` process: KServe's ModelServer (model registry, data plane, event loop)
with our app, our Guard in front of it, draining on SIGTERM and an optional shared port.

KServe's REST server is extended through private hooks (`_RefreshingServer`,
`_register_endpoints`, `_add_exception_handlers`, `_add_middlewares`, `_serve`,
`_register_and_check_atleast_one_model_is_ready`): the distribution pins the KServe minor
version they were read in (`model_handlers/pyproject.toml`), and
`tests/unit/handlers/serving/test_kserve_contract.py` fails on any other.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import fastapi
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.protocol.rest.server import RESTServer, _RefreshingServer

from recmodel_handlers.serving.app import Routes, add_exception_handlers
from recmodel_handlers.serving.connection import protocol_for
from recmodel_handlers.serving.guard import Guard, ServerState
from recmodel_handlers.settings import ServerSettings

log = logging.getLogger(__name__)


class _DrainingServer(_RefreshingServer):  # type: ignore[misc]
    """uvicorn, told by SIGTERM to drain first: readiness fails at once (so endpoints and load
    balancers stop sending), requests keep being answered for `drain_seconds`, then uvicorn's
    own graceful shutdown stops accepting and finishes what is in flight. A second signal
    stops at once."""

    def __init__(self, config: Any, state: ServerState, drain_seconds: float) -> None:
        super().__init__(config)
        self._state = state
        self._drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._state.draining or self._drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self._state.draining = True
        log.info("signal %d: draining for %.1f s, then stopping", sig, self._drain_seconds)
        timer = threading.Timer(self._drain_seconds, super().handle_exit, args=(sig, None))
        timer.daemon = True
        timer.start()


class RecModelRESTServer(RESTServer):  # type: ignore[misc]
    def __init__(self, *args: Any, settings: ServerSettings, server_version: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.state = ServerState()
        self.server_version = server_version
        self._server = _DrainingServer(self.config, self.state, settings.drain_seconds)
        self.sockets: list[socket.socket] | None = None

    async def start(self) -> None:
        """As KServe's, with our own listening socket when the port is shared (reuse_port)."""
        self.create_application()
        await self._server.serve(sockets=self.sockets)

    def _register_endpoints(self, app: fastapi.FastAPI) -> None:
        routes = Routes(self.dataplane.model_registry.get_models, self.state, self.server_version)
        app.include_router(routes.router())  # before KServe's, so these answer their paths
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app: fastapi.FastAPI) -> None:
        add_exception_handlers(app)

    def _add_middlewares(self, app: fastapi.FastAPI) -> None:
        app.add_middleware(Guard, settings=self.settings, state=self.state)

    @classmethod
    def run_models(cls, models: list[Any], *, host: str, port: int, settings: ServerSettings) -> None:
        """KServe's ModelServer (registry, data plane, event loop), REST only, on `host`
        (KServe itself always binds 0.0.0.0)."""
        server = ModelServer(
            http_port=port,
            enable_grpc=False,
            workers=1,
            enable_latency_logging=False,
            grace_period=int(settings.request_timeout_ms / 1000) + 1,
        )
        server._register_and_check_atleast_one_model_is_ready(models)

        def admit() -> None:
            for model in models:
                model.admit()

        rest = cls(
            FASTAPI_APP_IMPORT_STRING,
            server.dataplane,
            server.model_repository_extension,
            port,
            workers=1,
            grace_period=server.grace_period,
            event_loop=server.event_loop,
            timeout_keep_alive=server.timeout_keep_alive,
            settings=settings,
            server_version=_package_version(),
        )
        rest.state.admit = admit
        rest.state.model = ",".join(model.name for model in models)  # one model per server in practice
        rest.config.host = host
        rest.config.http = protocol_for(settings, rest.state)  # the head's limits and early refusals, per connection
        if settings.reuse_port:
            rest.sockets = [_shared_port(host, port)]
        access = logging.getLogger("uvicorn.access")  # rejections are logged by the Guard, successes are metrics
        access.handlers, access.propagate = [], False
        server._rest_server = rest
        server.servers.append(rest.start())
        server.setup_event_loop()
        server.register_signal_handler()
        asyncio.run(server._serve())


def _shared_port(host: str, port: int) -> socket.socket:
    """A listening socket other processes may bind too (SO_REUSEPORT): bound only once the
    model is loaded, so connections reach only replicas that can answer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (with
    # proto 0, Nagle and delayed ACKs added 40 ms to every answer).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recmodel-handlers")
    except PackageNotFoundError:
        return "0"
