"""The HTTP face of `recmodel serve`: KServe's ModelServer and REST server, with our own
Open Inference Protocol routes and error handling in front of KServe's.

Why not KServe's V2 routes as they are (kserve 0.21.0, `kserve/protocol/rest/v2_endpoints.py`
and `dataplane.py`): every `/versions/{v}` path answers 501; model metadata declares no inputs
or outputs and `versions: null`; responses carry `model_version: null` and `parameters: null`;
a request without a JSON content type is taken for the binary extension (Triton's client sends
none); a non-numeric `inference-header-content-length` is a 500; body validation errors are
FastAPI's 422 with `detail`; every 4xx is logged with a traceback. The routes here come first
in the app, so they answer those paths; KServe's remaining routes (V1 listing, /metrics,
repository) stay as KServe serves them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import fastapi
import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.rest.server import RESTServer, _RefreshingServer
from starlette.exceptions import HTTPException
from starlette.types import Scope

from recmodel_handlers import jsondoc, oip
from recmodel_handlers.batching import Overloaded
from recmodel_handlers.errors import RequestError
from recmodel_handlers.guard import ERROR_KEY, BodyTooLarge, Guard, ServerState
from recmodel_handlers.settings import ServerSettings

log = logging.getLogger(__name__)
SERVER_NAME = "recmodel"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "pytorch_recmodel"


class ServedModel(Protocol):
    name: str
    version: str
    ready: bool
    inputs: list[oip.TensorSpec]
    outputs: list[oip.TensorSpec]

    def admit(self) -> None: ...

    def explain_docs(self, payload: Any) -> Awaitable[dict[str, Any]]: ...

    def __call__(self, body: Any, headers: dict[str, str] | None = None) -> Awaitable[tuple[Any, dict[str, str]]]: ...


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


def _error(scope: Scope, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    scope[ERROR_KEY] = message
    return _json({"error": message}, status, headers)


class Routes:
    """OIP REST (every path of the spec, with and without versions) and V1 predict."""

    def __init__(self, models: Callable[[], dict[str, ServedModel]], state: ServerState, server_version: str) -> None:
        self._models = models
        self._state = state
        self._server_version = server_version

    def model(self, name: str, version: str | None = None) -> ServedModel:
        model = self._models().get(name)
        if model is None:
            raise ModelNotFound(name)
        if version is not None and version != model.version:
            raise ModelNotFound(f"{name} version {version} (this server has version {model.version})")
        return model

    def _ready(self) -> bool:
        return not self._state.draining and all(m.ready for m in self._models().values())

    # -- health and metadata -------------------------------------------------------------------
    async def server_metadata(self) -> Response:
        return _json({"name": SERVER_NAME, "version": self._server_version, "extensions": EXTENSIONS})

    async def live(self) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        if not self._ready():
            return _error(request.scope, 503, "draining" if self._state.draining else "models are loading")
        return _json({"ready": True})

    async def model_metadata(self, model_name: str, model_version: str | None = None) -> Response:
        model = self.model(model_name, model_version)
        return _json(
            {
                "name": model.name,
                "versions": [model.version],
                "platform": PLATFORM,
                "inputs": [t.to_json() for t in model.inputs],
                "outputs": [t.to_json() for t in model.outputs],
            }
        )

    async def model_ready(self, request: Request, model_name: str, model_version: str | None = None) -> Response:
        model = self.model(model_name, model_version)
        if not (model.ready and not self._state.draining):
            return _error(request.scope, 503, f"model {model_name} is not ready")
        return _json({"name": model.name, "ready": True})

    async def v1_model_ready(self, request: Request, model_name: str) -> Response:
        return await self.model_ready(request, model_name)

    # -- inference -----------------------------------------------------------------------------
    async def infer(self, request: Request, model_name: str, model_version: str | None = None) -> Response:
        model = self.model(model_name, model_version)
        headers = {k.lower(): v for k, v in request.headers.items()}
        parsed = oip.parse_infer_request(await request.body(), headers)
        if parsed.id:
            request.scope["recmodel.request_id"] = parsed.id
        outputs, _ = await model(parsed, headers)
        body, response_headers = oip.encode_infer_response(parsed, model.name, model.version, outputs)
        return Response(body, headers=response_headers)

    async def predict(self, request: Request, model_name: str) -> Response:
        model = self.model(model_name)
        payload = jsondoc.loads(await request.body())
        result, _ = await model(payload, dict(request.headers))
        return _json(result)

    async def explain(self, request: Request, model_name: str) -> Response:
        model = self.model(model_name)
        return _json(await model.explain_docs(jsondoc.loads(await request.body())))

    def router(self) -> fastapi.APIRouter:
        router = fastapi.APIRouter()
        get, post = ["GET"], ["POST"]
        for path in ("/v2", "/v2/"):
            router.add_api_route(path, self.server_metadata, methods=get, include_in_schema=False)
        router.add_api_route("/v2/health/live", self.live, methods=get)
        router.add_api_route("/v2/health/ready", self.ready, methods=get)
        for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}"):
            router.add_api_route(prefix, self.model_metadata, methods=get)
            router.add_api_route(f"{prefix}/ready", self.model_ready, methods=get)
            router.add_api_route(f"{prefix}/infer", self.infer, methods=post)
        router.add_api_route("/v1/models/{model_name}", self.v1_model_ready, methods=get)
        router.add_api_route("/v1/models/{model_name}:predict", self.predict, methods=post)
        router.add_api_route("/v1/models/{model_name}:explain", self.explain, methods=post)
        return router


# -- errors: one JSON shape, one log line (the Guard writes it), a traceback only for a 5xx ----
async def _request_error(request: Request, error: Exception) -> Response:
    return _error(request.scope, 400, str(error))


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return _error(request.scope, 400, f"{where}: {first.get('msg', 'is invalid')}")


async def _not_found(request: Request, error: Exception) -> Response:
    return _error(request.scope, 404, f"model not found: {error}")


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(request.scope, error.status_code, str(error.detail), dict(error.headers or {}))  # 405 keeps Allow


async def _too_large(request: Request, error: Exception) -> Response:
    return _error(request.scope, 413, "body: larger than this server accepts")


async def _overloaded(request: Request, error: Exception) -> Response:
    assert isinstance(error, Overloaded)
    return _error(request.scope, 503, str(error), {"retry-after": str(error.retry_after)})


async def _server_error(request: Request, error: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return _error(request.scope, 500, f"internal error: {type(error).__name__}")


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
        for kind, handler in (
            (RequestError, _request_error),
            (InvalidInput, _request_error),
            (RequestValidationError, _validation_error),
            (ModelNotFound, _not_found),
            (HTTPException, _http_error),
            (BodyTooLarge, _too_large),
            (Overloaded, _overloaded),
            (Exception, _server_error),
        ):
            app.add_exception_handler(kind, handler)

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
        rest.config.host = host
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
