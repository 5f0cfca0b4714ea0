"""The HTTP app of `recmodel serve`: our Open Inference Protocol and V1 routes in front of
KServe's, and one exception handler that answers every error as `errors.py` maps it.

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

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import fastapi
import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from kserve import errors as kserve_errors
from starlette.exceptions import HTTPException

from recmodel_handlers.errors import (
    Draining,
    InternalError,
    MethodNotAllowed,
    ModelNotFound,
    RequestError,
    RouteError,
    ServingError,
    as_serving_error,
)
from recmodel_handlers.serving import oip
from recmodel_handlers.serving.guard import DEADLINE_KEY, ERROR_KEY, ServerState

log = logging.getLogger(__name__)
SERVER_NAME = "recmodel"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "pytorch_recmodel"


def _headers(request: Request) -> dict[str, str]:
    """Lower-case names, the last value of a repeated header (one pass, linear in their number),
    and the deadline the Guard set (under a name no client can send: it is set here)."""
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in request.scope.get("headers", ())}
    headers.pop(DEADLINE_KEY, None)
    deadline = request.scope.get(DEADLINE_KEY)
    if deadline is not None:
        headers[DEADLINE_KEY] = repr(deadline)
    return headers


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

    async def ready(self) -> Response:
        if not self._ready():
            raise Draining("draining" if self._state.draining else "models are loading")
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

    async def model_ready(self, model_name: str, model_version: str | None = None) -> Response:
        model = self.model(model_name, model_version)
        if not (model.ready and not self._state.draining):
            raise Draining(f"model {model_name} is not ready")
        return _json({"name": model.name, "ready": True})

    async def v1_model_ready(self, model_name: str) -> Response:
        return await self.model_ready(model_name)

    # -- inference -----------------------------------------------------------------------------
    async def infer(self, request: Request, model_name: str, model_version: str | None = None) -> Response:
        model = self.model(model_name, model_version)
        headers = _headers(request)
        parsed = oip.parse_infer_request(await request.body(), headers)
        if parsed.id:
            request.scope["recmodel.request_id"] = parsed.id
        outputs, _ = await model(parsed, headers)
        body, response_headers = oip.encode_infer_response(parsed, model.name, model.version, outputs)
        return Response(body, headers=response_headers)

    async def predict(self, request: Request, model_name: str) -> Response:
        model = self.model(model_name)
        result, _ = await model(await request.body(), _headers(request))
        return _json(result)

    async def explain(self, request: Request, model_name: str) -> Response:
        model = self.model(model_name)
        return _json(await model.explain_docs(await request.body()))

    async def wrong_method(self, request: Request) -> Response:
        raise MethodNotAllowed(request.method, request.url.path, ("POST",))

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
            router.add_api_route(f"{prefix}/infer", self.wrong_method, methods=["GET", "PUT", "PATCH", "DELETE"])
        router.add_api_route("/v1/models/{model_name}:predict", self.predict, methods=post)
        router.add_api_route("/v1/models/{model_name}:explain", self.explain, methods=post)
        # Before GET /v1/models/{model_name}, which would take "shop:predict" for a model's name.
        others = ["GET", "PUT", "PATCH", "DELETE", "HEAD"]
        for path in ("/v1/models/{model_name}:predict", "/v1/models/{model_name}:explain"):
            router.add_api_route(path, self.wrong_method, methods=others, include_in_schema=False)
        router.add_api_route("/v1/models/{model_name}", self.v1_model_ready, methods=get)
        return router


def from_framework(error: Exception) -> ServingError:
    """What the framework and KServe raise, as the errors we answer with."""
    if isinstance(error, RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return RequestError(where, str(first.get("msg", "is invalid")))
    if isinstance(error, kserve_errors.InvalidInput):
        return RequestError("body", str(error.reason))
    if isinstance(error, kserve_errors.ModelNotFound):
        return ModelNotFound(str(error.reason))
    if isinstance(error, HTTPException):  # no such path; 405 keeps its Allow header
        return RouteError(error.status_code, str(error.detail), dict(error.headers or {}))
    return as_serving_error(error)


async def answer_error(request: Request, error: Exception) -> Response:
    """The one exception handler: one body shape, one log line (the Guard writes it), a
    traceback only for a failure of ours."""
    served = from_framework(error)
    if isinstance(served, InternalError):
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    request.scope[ERROR_KEY] = str(served)
    return Response(served.body(), status_code=served.status, media_type="application/json", headers=served.headers())


HANDLED = (ServingError, RequestValidationError, kserve_errors.InvalidInput, kserve_errors.ModelNotFound, HTTPException)


def add_exception_handlers(app: fastapi.FastAPI) -> None:
    for kind in HANDLED:
        app.add_exception_handler(kind, answer_error)
