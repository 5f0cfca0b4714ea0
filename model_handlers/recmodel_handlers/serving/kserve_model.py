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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson
import torch
from kserve import Model

from recmodel_handlers.errors import Overloaded, RequestError, status_of
from recmodel_handlers.model import inputs
from recmodel_handlers.model.features import EncodedRequest, FeatureEncoder, FeatureSchema
from recmodel_handlers.model.package import load_package
from recmodel_handlers.ranking import request as ranking_request
from recmodel_handlers.ranking.batching import MicroBatcher
from recmodel_handlers.ranking.core import RankingCore, ScoredBatch, tune_for_serving
from recmodel_handlers.ranking.rules import rank_items
from recmodel_handlers.serving import metrics as m
from recmodel_handlers.serving import oip
from recmodel_handlers.serving.guard import DEADLINE_KEY, TIMEOUT_HEADER
from recmodel_handlers.serving.mirror import Mirror
from recmodel_handlers.serving.server import RecModelRESTServer
from recmodel_handlers.settings import CoreSettings, ServerSettings

log = logging.getLogger(__name__)
V2_INPUT = "request"
V2_OUTPUT = "ranking"
MAX_EXPLAINS_WAITING = 4
FORWARDED = ("x-request-id", "traceparent", "tracestate")


@dataclass
class Parsed:
    """What preprocess hands to predict: the protocol the answer must use, and the work."""

    protocol: str  # "v1" | "v2"
    requests: list[EncodedRequest]
    tensors: dict[str, Any] | None = None  # role predictor
    request_id: str = ""
    docs: list[Any] = field(default_factory=list)  # the documents as sent (what a mirror copies)


DOCUMENT_INPUTS = [oip.TensorSpec(V2_INPUT, "BYTES", (-1,))]
DOCUMENT_OUTPUTS = [oip.TensorSpec(V2_OUTPUT, "BYTES", (-1,))]
SCORE_OUTPUTS = [oip.TensorSpec("scores", "FP32", (-1,))]


def tensor_inputs(schema: FeatureSchema) -> list[oip.TensorSpec]:
    """The predictor role's inputs, as `model.inputs` declares them."""
    return [oip.TensorSpec(spec.name, spec.datatype, spec.shape(schema)) for spec in inputs.MODEL_INPUTS]


def to_v2_inputs(tensors: inputs.Tensors) -> list[dict[str, Any]]:
    by_name = {spec.name: spec for spec in inputs.MODEL_INPUTS}
    return [
        {"name": name, "datatype": by_name[name].datatype, "shape": list(value.shape), "data": value.flatten().tolist()}
        for name, value in tensors.items()
    ]


def _document_parts(request: oip.InferRequest) -> list[tuple[bytes, str]]:
    """The BYTES elements of the `request` input, with where each sits (for error paths)."""
    tensor = oip.expect_inputs(request, DOCUMENT_INPUTS)[V2_INPUT]
    index = next(i for i, t in enumerate(request.inputs) if t.name == V2_INPUT)
    return [(raw, f"inputs[{index}].data[{i}]") for i, raw in enumerate(tensor.data) if isinstance(raw, bytes)]


def forwarded_headers(headers: dict[str, str], request_id: str) -> dict[str, str]:
    """What the transformer passes on to the predictor (KServe's `append_forwardable_headers`):
    the request id, the trace context, and the time left of the request's deadline."""
    out = {name: headers[name] for name in FORWARDED if name in headers}
    out.setdefault("x-request-id", request_id or str(uuid.uuid4()))
    deadline = headers.get(DEADLINE_KEY)
    if deadline is not None:
        out[TIMEOUT_HEADER.decode()] = f"{max(1.0, (float(deadline) - time.monotonic()) * 1000):.0f}"
    return out


@contextmanager
def _counted(requests: Callable[..., Any], seconds: Any, model: str) -> Iterator[None]:
    """Counts one request by its final status and observes its duration."""
    started = time.perf_counter()
    code = "200"
    try:
        yield
    except BaseException as error:
        code = str(status_of(error))
        raise
    finally:
        requests(model=model, code=code).inc()
        seconds.observe(time.perf_counter() - started)


class RecModelServer(Model):  # type: ignore[misc]
    def __init__(
        self,
        name: str,
        model_dir: str,
        settings: CoreSettings,
        role: str = "all",
        predictor_host: str | None = None,
        queue_budget_ms: float = ServerSettings.max_queue_ms,
        mirror: Mirror | None = None,
    ) -> None:
        super().__init__(name)
        self.mirror = mirror
        self.queue_budget = queue_budget_ms / 1000.0
        self.model_dir = model_dir
        self.settings = settings
        self.role = role
        self.predictor_host = predictor_host
        self.version = ""
        self.core: RankingCore | None = None
        self.encoder: FeatureEncoder | None = None
        self.batcher: MicroBatcher[EncodedRequest, np.ndarray] | None = None
        self.inputs: list[oip.TensorSpec] = DOCUMENT_INPUTS
        self.outputs: list[oip.TensorSpec] = DOCUMENT_OUTPUTS
        self.in_flight = 0
        self._client: httpx.AsyncClient | None = None
        self._explaining = asyncio.Semaphore(1)
        self._explain_waiting = 0
        self._explain_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recmodel-explain")

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self) -> bool:
        """Fails loudly at startup (corrupt or missing model dir), never at the first request."""
        if self.role == "transformer":
            if not self.predictor_host:
                raise ValueError("role transformer needs --predictor-host (KServe passes --predictor_host)")
            package = load_package(self.model_dir)
            self.encoder = FeatureEncoder(
                package.schema, package.stats, self.settings.top_k, self.settings.max_candidates, items=package.items
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
                weight=lambda request: len(request.candidates.ids),
            )
            log.info("serving %s", self.core.describe())
        if self.role == "predictor":
            self.inputs, self.outputs = tensor_inputs(self.encoder.schema), SCORE_OUTPUTS
        self.ready = True
        return self.ready

    def admit(self) -> None:
        """Raises Overloaded when the queued work would delay a newcomer past the budget."""
        if self.batcher is not None:
            self.batcher.admit(self.queue_budget)

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
        try:
            with _counted(m.REQUESTS.labels, m.REQUEST_SECONDS.labels(model=self.name), self.name):
                if verb is None:
                    return await super().__call__(body, headers)
                return await super().__call__(body, headers, verb)
        finally:
            self.in_flight -= 1
            m.INFLIGHT.labels(model=self.name).dec()

    async def explain_docs(self, body: bytes) -> dict[str, Any]:
        """V1 `:explain`: the ranking plus each shown item's Shapley values per feature group.
        The same decoding, limits and error paths as `:predict`. One explanation at a time, on
        its own thread: the ranking path's batcher never waits for it."""
        if self.core is None:
            raise RequestError("verb", "explain is served by the role that scores (all), not by a transformer")
        with _counted(m.EXPLAINS.labels, m.EXPLAIN_SECONDS.labels(model=self.name), self.name):
            docs = ranking_request.decode(body, self.settings.max_request_candidates)
            if self._explain_waiting >= MAX_EXPLAINS_WAITING:
                raise Overloaded(0.0, 0.0, f"busy: {self._explain_waiting} explanations are waiting already")
            self._explain_waiting += 1
            try:
                await self._explaining.acquire()
            finally:
                self._explain_waiting -= 1
            try:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(self._explain_thread, self.core.explain_documents, docs)
            finally:
                self._explaining.release()
            for result in results:
                result["model"] = self.name  # the served name, as :predict answers
            return {"explanations": results}

    def validate(self, payload: Any) -> Any:
        return payload  # preprocess validated it; KServe's own check assumes a dict

    # -- the three stages --------------------------------------------------------------------
    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Parsed:
        """payload: an `oip.InferRequest` (V2) or the V1 body (bytes, or parsed)."""
        started = time.perf_counter()
        assert self.encoder is not None
        limit = self.settings.max_request_candidates
        headers = headers or {}
        if isinstance(payload, oip.InferRequest):
            oip.expect_outputs(payload, self.outputs)
            request_id = payload.id or headers.get("x-request-id", "")
            if self.role == "predictor":
                tensors = oip.expect_inputs(payload, self.inputs)
                arrays = {name: np.asarray(t.data).reshape(t.shape) for name, t in tensors.items()}
                return Parsed("v2", [], tensors=inputs.from_arrays(arrays, self.encoder.schema), request_id=request_id)
            found, protocol = ranking_request.decode_parts(_document_parts(payload), limit), "v2"
        else:
            found, protocol = ranking_request.decode(payload, limit), "v1"
            request_id = headers.get("x-request-id", "")
        requests = ranking_request.encode(self.encoder, found)
        m.STAGE_SECONDS.labels(model=self.name, stage="features").observe(time.perf_counter() - started)
        return Parsed(protocol, requests, request_id=request_id, docs=found.docs)

    async def predict(self, parsed: Parsed, headers: dict[str, str] | None = None) -> Any:
        """V1: the response document. V2: the output tensors."""
        if parsed.tensors is not None:
            assert self.core is not None
            scores = await asyncio.get_running_loop().run_in_executor(None, self.core.score_tensors, parsed.tensors)
            return [oip.Tensor("scores", "FP32", [len(scores)], scores)]
        if self.role == "transformer":
            forwarded = forwarded_headers(headers or {}, parsed.request_id)
            per_request = await self._remote_scores(parsed.requests, forwarded)
        else:
            assert self.batcher is not None
            self.admit()
            per_request = list(await asyncio.gather(*(self.batcher.submit(r) for r in parsed.requests)))
        started = time.perf_counter()
        results = [
            ranking_request.prediction(
                rank_items(
                    r.candidates, scores, r.rules, vectors=self.core.item_vectors(r.candidates) if self.core else None
                ),
                self.name,
                self.version,
            )
            for r, scores in zip(parsed.requests, per_request, strict=True)
        ]
        m.STAGE_SECONDS.labels(model=self.name, stage="rank").observe(time.perf_counter() - started)
        if self.mirror is not None:
            self.mirror.offer(parsed.docs, results)
        if parsed.protocol == "v1":
            return {"predictions": results}
        return [oip.Tensor(V2_OUTPUT, "BYTES", [len(results)], [orjson.dumps(r) for r in results])]

    async def _remote_scores(self, requests: list[EncodedRequest], headers: dict[str, str]) -> list[np.ndarray]:
        """KServe's transformer contract: features here, scoring at the predictor (V2 tensors)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30.0)
        host = self.predictor_host or ""
        base = host if host.startswith("http") else f"http://{host}"
        body = {"id": headers["x-request-id"], "inputs": to_v2_inputs(inputs.stack_requests(requests))}
        started = time.perf_counter()
        response = await self._client.post(
            f"{base}/v2/models/{self.name}/infer",
            content=orjson.dumps(body),
            headers={"content-type": "application/json", **headers},
        )
        response.raise_for_status()
        m.STAGE_SECONDS.labels(model=self.name, stage="score").observe(time.perf_counter() - started)
        scores = np.asarray(orjson.loads(response.content)["outputs"][0]["data"], dtype=np.float32)
        sizes = [len(r.candidates.ids) for r in requests]
        return list(np.split(scores, np.cumsum(sizes)[:-1]))


def serve(
    *,
    model_dir: str,
    name: str,
    host: str,
    port: int,
    role: str,
    predictor_host: str | None,
    settings: CoreSettings,
    server: ServerSettings,
) -> None:
    if server.threads > 0:
        torch.set_num_threads(server.threads)
    mirror = Mirror(server.shadow_url, name, server.shadow_percent) if server.shadow_url else None
    model = RecModelServer(
        name,
        model_dir,
        settings,
        role=role,
        predictor_host=predictor_host,
        queue_budget_ms=server.max_queue_ms,
        mirror=mirror,
    )
    model.load()
    tune_for_serving()
    RecModelRESTServer.run_models([model], host=host, port=port, settings=server)
