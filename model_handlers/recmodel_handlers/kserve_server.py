"""KServe adapter: a `kserve.Model` over the ranking core, served by KServe's ModelServer.

Roles: `all` (features + scoring), `transformer` (features on CPU; scoring by a predictor
over V2 tensors, KServe's transformer contract) and `predictor` (scoring tensors only).
V1: POST /v1/models/<name>:predict {"instances": [doc, ...]}.
V2: POST /v2/models/<name>/infer with one BYTES input "request" holding the same JSON.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
from kserve import Model, ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.server import RESTServer

from recmodel_handlers import serving_metrics as m
from recmodel_handlers.batching import MicroBatcher
from recmodel_handlers.core import RankingCore, ScoredBatch, tune_for_serving
from recmodel_handlers.errors import RequestError
from recmodel_handlers.features import EncodedRequest, FeatureEncoder, stack_requests
from recmodel_handlers.package import load_package
from recmodel_handlers.ranking import rank_items
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.wire import from_v2_inputs, to_v2_inputs

log = logging.getLogger(__name__)
V2_INPUT = "request"
V2_OUTPUT = "ranking"


@dataclass
class Parsed:
    """What preprocess hands to predict: the protocol the answer must use, and the work."""

    protocol: str  # "v1" | "v2"
    requests: list[EncodedRequest]
    tensors: dict[str, Any] | None = None  # role predictor
    request_id: str = ""


def _invalid(error: RequestError) -> InvalidInput:
    return InvalidInput(str(error))


def _docs_from_v2(request: InferRequest) -> list[Any]:
    inputs = {i.name: i for i in request.inputs}
    if V2_INPUT not in inputs:
        raise RequestError("inputs", f'needs one BYTES input named "{V2_INPUT}" holding the ranking document')
    tensor: InferInput = inputs[V2_INPUT]
    if tensor.datatype != "BYTES":
        raise RequestError(f"inputs.{V2_INPUT}.datatype", "must be BYTES")
    docs = []
    for raw in tensor.data:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise RequestError(f"inputs.{V2_INPUT}.data", f"is not valid JSON: {error}") from error
        docs.extend(RankingCore.instances_of(doc) if type(doc) is dict and "instances" in doc else [doc])
    return docs


class RecModelServer(Model):  # type: ignore[misc]
    def __init__(
        self, name: str, model_dir: str, settings: CoreSettings, role: str = "all", predictor_host: str | None = None
    ) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.settings = settings
        self.role = role
        self.predictor_host = predictor_host
        self.core: RankingCore | None = None
        self.encoder: FeatureEncoder | None = None
        self.batcher: MicroBatcher[EncodedRequest, np.ndarray] | None = None
        self.in_flight = 0
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self) -> bool:
        """Fails loudly at startup (corrupt or missing model dir), never at the first request."""
        if self.role == "transformer":
            if not self.predictor_host:
                raise ValueError("role transformer needs --predictor-host (KServe passes --predictor_host)")
            package = load_package(self.model_dir)
            self.encoder = FeatureEncoder(
                package.schema, package.stats, self.settings.top_k, self.settings.max_candidates
            )
            self.version = package.version
        else:
            self.core = RankingCore.from_dir(self.model_dir, self.settings)
            self.encoder = self.core.encoder
            self.version = self.core.version
            m.PRECISION.labels(model=self.name, precision=self.core.precision).set(1)
            if self.core.gate is not None:
                m.QUALITY_DROP.labels(model=self.name, precision=self.core.gate.precision).set(self.core.gate.drop)
            self.batcher = MicroBatcher(
                self._score_batch,
                self.settings.max_batch_size,
                self.settings.max_latency_ms,
                in_flight=lambda: self.in_flight,
                on_batch=lambda size: m.BATCH_SIZE.labels(model=self.name).observe(size),
            )
            log.info("serving %s", self.core.describe())
        self.ready = True
        return self.ready

    def _score_batch(self, requests: list[EncodedRequest]) -> list[np.ndarray]:
        assert self.core is not None
        started = time.perf_counter()
        scored: ScoredBatch = self.core.score(requests)
        m.STAGE_SECONDS.labels(model=self.name, stage="score").observe(time.perf_counter() - started)
        m.CACHE_LOOKUPS.labels(model=self.name, result="hit").inc(scored.cache_hits)
        m.CACHE_LOOKUPS.labels(model=self.name, result="miss").inc(len(requests) - scored.cache_hits)
        m.CANDIDATES.labels(model=self.name).inc(scored.candidates)
        return scored.scores

    # -- request accounting ----------------------------------------------------------------------
    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: Any = None) -> Any:
        self.in_flight += 1
        m.INFLIGHT.labels(model=self.name).inc()
        started = time.perf_counter()
        code = "200"
        try:
            if verb is None:
                return await super().__call__(body, headers)
            return await super().__call__(body, headers, verb)
        except InvalidInput:
            code = "400"
            raise
        except Exception:
            code = "500"
            raise
        finally:
            self.in_flight -= 1
            m.INFLIGHT.labels(model=self.name).dec()
            m.REQUESTS.labels(model=self.name, code=code).inc()
            m.REQUEST_SECONDS.labels(model=self.name).observe(time.perf_counter() - started)

    # -- the three stages --------------------------------------------------------------------
    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Parsed:
        started = time.perf_counter()
        try:
            if isinstance(payload, InferRequest):
                if self.role == "predictor":
                    arrays = {i.name: i.as_numpy() for i in payload.inputs}
                    return Parsed("v2", [], tensors=from_v2_inputs(arrays), request_id=payload.id or "")
                docs, protocol, request_id = _docs_from_v2(payload), "v2", payload.id or ""
            else:
                docs, protocol, request_id = RankingCore.instances_of(payload), "v1", ""
            assert self.encoder is not None
            requests = [self.encoder.encode(doc) for doc in docs]
        except RequestError as error:
            raise _invalid(error) from error
        m.STAGE_SECONDS.labels(model=self.name, stage="features").observe(time.perf_counter() - started)
        return Parsed(protocol, requests, request_id=request_id)

    async def predict(self, parsed: Parsed, headers: dict[str, str] | None = None) -> Any:
        if parsed.tensors is not None:
            assert self.core is not None
            scores = await asyncio.get_running_loop().run_in_executor(None, self.core.score_tensors, parsed.tensors)
            output = InferOutput(name="scores", shape=[len(scores)], datatype="FP32", data=scores.tolist())
            return InferResponse(
                response_id=parsed.request_id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[output]
            )
        if self.role == "transformer":
            per_request = await self._remote_scores(parsed.requests)
        else:
            assert self.batcher is not None
            per_request = list(await asyncio.gather(*(self.batcher.submit(r) for r in parsed.requests)))
        started = time.perf_counter()
        results = [
            {
                "items": rank_items(r.candidates.ids, r.candidates.categories, scores, r.rules),
                "model": self.name,
                "version": self.version,
            }
            for r, scores in zip(parsed.requests, per_request, strict=True)
        ]
        m.STAGE_SECONDS.labels(model=self.name, stage="rank").observe(time.perf_counter() - started)
        if parsed.protocol == "v1":
            return {"predictions": results}
        output = InferOutput(
            name=V2_OUTPUT, shape=[len(results)], datatype="BYTES", data=[orjson.dumps(r).decode() for r in results]
        )
        return InferResponse(
            response_id=parsed.request_id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[output]
        )

    async def _remote_scores(self, requests: list[EncodedRequest]) -> list[np.ndarray]:
        """KServe's transformer contract: features here, scoring at the predictor (V2 tensors)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30.0)
        host = self.predictor_host or ""
        base = host if host.startswith("http") else f"http://{host}"
        body = {"id": str(uuid.uuid4()), "inputs": to_v2_inputs(stack_requests(requests))}
        started = time.perf_counter()
        response = await self._client.post(
            f"{base}/v2/models/{self.name}/infer",
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()
        m.STAGE_SECONDS.labels(model=self.name, stage="score").observe(time.perf_counter() - started)
        scores = np.asarray(orjson.loads(response.content)["outputs"][0]["data"], dtype=np.float32)
        sizes = [len(r.candidates.ids) for r in requests]
        return list(np.split(scores, np.cumsum(sizes)[:-1]))


class LocalModelServer(ModelServer):  # type: ignore[misc]
    """KServe's ModelServer, REST only, bound to the address we are told (KServe itself
    always binds 0.0.0.0)."""

    def __init__(self, host: str, http_port: int) -> None:
        super().__init__(http_port=http_port, enable_grpc=False, workers=1, enable_latency_logging=False)
        self.host = host

    def start(self, models: list[Model]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            access_log_format=self.access_log_format,
            workers=1,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def serve(
    *, model_dir: str, name: str, host: str, port: int, role: str, predictor_host: str | None, settings: CoreSettings
) -> None:
    model = RecModelServer(name, model_dir, settings, role=role, predictor_host=predictor_host)
    model.load()
    tune_for_serving()
    LocalModelServer(host, port).start([model])
