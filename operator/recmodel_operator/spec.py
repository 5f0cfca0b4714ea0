"""The RecModel v1alpha1 API as pydantic models: the operator parses every spec with these,
and the CRD's OpenAPI schema is generated from them (`recmodel_operator.crd`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from recmodel_operator.quantity import BINARY_SUFFIXES, parse_quantity, suffix_of

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
STORAGE_URI_PATTERN = r"^(s3|gs|pvc|https?|file)://.+$"
CEL = "x-kubernetes-validations"
MAX_CPU_CORES = 256  # no node has more; a larger request can never be scheduled

Runtime = Literal["kserve", "torchserve"]
Backend = Literal["kserve", "standalone"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]
Metric = Literal["cpu", "memory", "concurrency", "rps", "latency"]
TORCHSERVE_METRICS = (
    "runtime torchserve does not export the recmodel_* series that latency (and, on backend standalone, rps and "
    "concurrency) scaling queries; use runtime kserve, or metric cpu or memory"
)
CANARY_DELIVERY = (
    "canary.analysis and canary.shadow need backend standalone (on backend kserve, KServe's Knative mode "
    "splits the traffic: set canary.trafficPercent)"
)
STEPS_INCREASE = "canary.analysis.steps must increase"
SCALE_DOWN_WINDOW = (
    "autoscaling.scaleDownStabilizationSeconds applies to the autoscalers RecModel writes (backend standalone, or "
    "metric latency); KServe's own autoscaler on backend kserve has no such setting"
)


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelSource(ApiModel):
    """Where the packaged model lives."""

    storage_uri: str = Field(
        pattern=STORAGE_URI_PATTERN,
        description="URI of the packaged model directory (recmodel train --out). Schemes: s3, gs, pvc, https, file.",
    )


class RankingSpec(ApiModel):
    """Limits of a ranking request."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {"rule": "self.topK <= self.maxCandidates", "message": "topK must not exceed maxCandidates"},
                {
                    "rule": "self.maxCandidates <= self.maxRequestCandidates",
                    "message": "maxCandidates must not exceed maxRequestCandidates",
                },
            ]
        }
    )
    top_k: int = Field(50, ge=1, le=10000, description="Items returned when the request does not say.")
    max_candidates: int = Field(
        1000, ge=1, le=100000, description="Candidates accepted per ranking document; more get HTTP 400."
    )
    max_request_candidates: int = Field(
        10000,
        ge=1,
        le=1000000,
        description="Candidates accepted over all documents of one HTTP request (V1 instances, V2 data); more get HTTP 400.",
    )

    @model_validator(mode="after")
    def _top_k_fits(self) -> RankingSpec:
        if self.top_k > self.max_candidates:
            raise ValueError("topK must not exceed maxCandidates")
        if self.max_candidates > self.max_request_candidates:
            raise ValueError("maxCandidates must not exceed maxRequestCandidates")
        return self


class PreprocessingSpec(ApiModel):
    """Where feature building runs."""

    mode: Literal["inline", "transformer"] = Field(
        "inline",
        description="inline: in the model server. transformer: a separate CPU-only KServe transformer builds features "
        "and forwards tensors to the (GPU) predictor.",
    )


class GpuSpec(ApiModel):
    """GPUs per replica."""

    count: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per replica; 0 runs on CPU.")
    product: str | None = Field(
        None,
        max_length=128,
        description="GPU product as the NVIDIA GPU operator labels nodes (nvidia.com/gpu.product), e.g. NVIDIA-A100-SXM4-80GB.",
    )


class ResourcesSpec(ApiModel):
    """Compute per model-server replica (requests equal limits)."""

    cpu: str = Field("1", pattern=QUANTITY_PATTERN, description="CPU quantity, e.g. 2 or 500m.")
    memory: str = Field("2Gi", pattern=QUANTITY_PATTERN, description="Memory quantity, e.g. 4Gi.")
    gpu: GpuSpec = Field(default_factory=GpuSpec, description="GPUs per replica.")

    @field_validator("cpu")
    @classmethod
    def _cpu_is_usable(cls, value: str) -> str:
        if suffix_of(value) in BINARY_SUFFIXES:
            raise ValueError(f"{value!r} uses a binary suffix; CPU is counted in cores or millicores, e.g. 2 or 500m")
        cores = parse_quantity(value)
        if cores <= 0:
            raise ValueError("must be more than 0")
        if cores > MAX_CPU_CORES:
            raise ValueError(f"{value!r} is {cores:,.0f} cores; at most {MAX_CPU_CORES} fit on a node")
        return value

    @field_validator("memory")
    @classmethod
    def _memory_is_usable(cls, value: str) -> str:
        if parse_quantity(value) < 2**20:
            raise ValueError(f"{value!r} is under 1Mi; memory is counted in bytes, e.g. 4Gi")
        return value

    @property
    def cpu_cores(self) -> float:
        return float(parse_quantity(self.cpu))


class Toleration(ApiModel):
    """A Kubernetes toleration."""

    key: str | None = Field(None, description="Taint key; empty with operator Exists matches every taint.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect; empty matches all."
    )
    toleration_seconds: int | None = Field(None, ge=0, description="How long a NoExecute taint is tolerated.")


class PlacementSpec(ApiModel):
    """Pod placement, merged with the GPU defaults (never replacing them)."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels the pods require.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Extra tolerations.")
    affinity: dict[str, Any] = Field(default_factory=dict, description="A Kubernetes Affinity, passed through.")


class AutoscalingSpec(ApiModel):
    """Replica range and the signal that drives it."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"}
            ]
        }
    )
    min_replicas: int = Field(
        1, ge=0, le=1000, description="Fewest replicas (0 allows scale to zero on KServe serverless)."
    )
    max_replicas: int = Field(1, ge=1, le=1000, description="Most replicas.")
    metric: Metric = Field(
        "concurrency",
        description="cpu or memory (target = % utilisation), concurrency (in-flight requests per replica), "
        "rps (requests/s per replica), latency (target = p95 milliseconds, through KEDA and Prometheus).",
    )
    target: int = Field(8, ge=1, le=100000, description="Target value of the metric per replica.")
    scale_down_stabilization_seconds: int | None = Field(
        None,
        ge=0,
        le=3600,
        description="How long the metric must stay low before replicas are removed (the HPA's scale-down "
        "stabilization window; Kubernetes' default, 300 s, when unset).",
    )

    @model_validator(mode="after")
    def _range_is_ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class BatchingSpec(ApiModel):
    """Request batching in the model server: concurrent requests share one forward pass."""

    max_batch_size: int = Field(32, ge=1, le=1024, description="Most requests in one batch.")
    max_latency_ms: int = Field(5, ge=0, le=1000, description="Longest wait for a batch to fill, in milliseconds.")


def _size_between(value: str, low: str, high: str) -> str:
    """A byte quantity within [low, high], or the error a person reads in the status."""
    if not parse_quantity(low) <= parse_quantity(value) <= parse_quantity(high):
        raise ValueError(f"{value!r} must be between {low} and {high}")
    return value


class ServerSpec(ApiModel):
    """What protects each model-server replica (runtime kserve): request size, the work it
    queues, deadlines and the drain on shutdown."""

    max_body_size: str = Field(
        "16Mi", pattern=QUANTITY_PATTERN, description="Largest request body, e.g. 16Mi; larger get HTTP 413."
    )
    max_queue: int = Field(
        8, ge=1, le=10000, description="Inference requests inside a replica at once; more get 503 with Retry-After."
    )
    max_queue_ms: int = Field(
        5,
        ge=1,
        le=60000,
        description="Once a replica has been busy for 25 ms on end: longest wait it accepts for a newcomer "
        "(requests inside / measured capacity), or one request's service time if longer; more get 503 with Retry-After.",
    )
    request_timeout_ms: int = Field(
        10000, ge=1, le=600000, description="Deadline of a request (clients may ask for less); then HTTP 504."
    )
    drain_seconds: int = Field(
        5, ge=0, le=300, description="After SIGTERM: not ready but still answering, before stopping."
    )
    max_headers: int = Field(100, ge=8, le=10000, description="Headers of one request; more get HTTP 431.")
    max_header_size: str = Field(
        "32Ki",
        pattern=QUANTITY_PATTERN,
        description="Request line and headers together, e.g. 32Ki; more get HTTP 431 (414 for the path alone).",
    )
    header_timeout_ms: int = Field(
        5000,
        ge=100,
        le=600000,
        description="From a request's first byte (a new connection's opening) to its last header; then HTTP 408.",
    )
    body_timeout_ms: int = Field(
        10000,
        ge=100,
        le=600000,
        description="For a request's whole body to arrive, before it takes an admission slot; then HTTP 408.",
    )
    max_connections: int = Field(
        1024,
        ge=16,
        le=65536,
        description="Open connections to one replica; one more is answered HTTP 503 and closed at once.",
    )

    @field_validator("max_body_size")
    @classmethod
    def _body_size_is_usable(cls, value: str) -> str:
        return _size_between(value, "1Ki", "1Gi")

    @field_validator("max_header_size")
    @classmethod
    def _header_size_is_usable(cls, value: str) -> str:
        return _size_between(value, "1Ki", "1Mi")

    @property
    def max_body_bytes(self) -> int:
        return int(parse_quantity(self.max_body_size))

    @property
    def max_header_bytes(self) -> int:
        return int(parse_quantity(self.max_header_size))

    @property
    def termination_grace_seconds(self) -> int:
        """Drain, then the longest request, then a margin for the process to exit."""
        return self.drain_seconds + -(-self.request_timeout_ms // 1000) + 5


class OptimizationSpec(ApiModel):
    """How the model is compressed, guarded by the quality gate."""

    precision: Precision = Field("fp32", description="fp32, bf16, fp16 or int8 (int8 weights, CPU).")
    compile: bool = Field(False, description="Compile the model (torch.compile) at startup.")
    max_quality_drop: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Largest NDCG@K drop against fp32 on the saved validation set; a precision that drops more is refused and fp32 kept.",
    )


class CacheSpec(ApiModel):
    """LRU+TTL cache of per-user computations."""

    max_entries: int = Field(100000, ge=0, le=10000000, description="Users kept; 0 disables the cache.")
    ttl_seconds: int = Field(300, ge=0, le=86400, description="Seconds an entry stays valid.")


class RetrievalSpec(ApiModel):
    """Requests without candidates: retrieved from the catalog index the package carries
    (`recmodel train` builds it from the item table; docs/retrieval.md)."""

    enabled: bool = Field(
        True,
        description="Retrieve for requests without candidates (when the package has an index); false: refuse them.",
    )
    candidates: int = Field(
        500,
        ge=1,
        le=100000,
        description="Candidates retrieved per request unless it says (retrieve); at most ranking.maxCandidates.",
    )


RETRIEVAL_FITS = "retrieval.candidates must not exceed ranking.maxCandidates"


class CanaryAnalysisSpec(ApiModel):
    """Progressive delivery: the canary's share grows step by step while every threshold holds
    (read from Prometheus); it is promoted after the last step and rolled back to 0% as soon as
    one fails."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {
                    "rule": "self.steps.isSorted() && self.steps.all(x, self.steps.exists_one(y, y == x))",
                    "message": STEPS_INCREASE,
                }
            ]
        }
    )
    steps: list[Annotated[int, Field(ge=1, le=100, description="Percent of live traffic.")]] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="The canary's traffic percent at each step, increasing; 100 ends with all traffic on it.",
    )
    step_seconds: int = Field(60, ge=10, le=86400, description="How long each step lasts (and the metrics window).")
    max_p95_ms: float | None = Field(
        None, gt=0, le=600000, description="Highest p95 latency of the canary, in milliseconds (unset: not checked)."
    )
    max_error_rate: float = Field(0.01, ge=0, le=1, description="Highest share of the canary's requests that get 5xx.")
    min_agreement: float | None = Field(
        0.9,
        ge=0,
        le=1,
        description="Lowest ranking agreement with the stable model on mirrored requests: NDCG@10 of the canary's "
        "ranking with the stable ranking as the ideal (unset: not checked, and nothing is mirrored).",
    )
    min_requests: int = Field(
        20, ge=1, le=1000000, description="Canary requests (and mirrored comparisons) a step needs before it can pass."
    )

    @model_validator(mode="after")
    def _steps_increase(self) -> CanaryAnalysisSpec:
        if any(a >= b for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(STEPS_INCREASE)
        return self


class CanarySpec(ApiModel):
    """A second model version that takes part of the traffic."""

    storage_uri: str = Field(pattern=STORAGE_URI_PATTERN, description="URI of the canary model.")
    traffic_percent: int = Field(
        10, ge=1, le=99, description="Share of requests, 1-99, sent to the canary (without analysis)."
    )
    shadow: bool = Field(
        False,
        description="The canary gets a copy of requests (mirrorPercent of them) and its answers are only compared, "
        "never returned; no live traffic.",
    )
    analysis: CanaryAnalysisSpec | None = Field(
        None, description="Step the canary's traffic up while its metrics hold; promote or roll back by itself."
    )
    mirror_percent: int = Field(
        20,
        ge=1,
        le=100,
        description="Share of the stable model's requests copied to the canary for comparison (shadow, or analysis "
        "with minAgreement).",
    )

    @property
    def mirrors(self) -> bool:
        """Whether the stable model copies requests to the canary for comparison."""
        return self.shadow or (self.analysis is not None and self.analysis.min_agreement is not None)


class IngressSpec(ApiModel):
    """An Ingress in front of the model server (backend standalone)."""

    enabled: bool = Field(False, description="Render an Ingress.")
    host: str | None = Field(
        None, max_length=253, description="Host name the Ingress answers; default <name>.<namespace>.example.com."
    )
    class_name: str | None = Field(None, max_length=253, description="IngressClass name.")


class RecModelSpec(ApiModel):
    """The desired state of a served ranking model."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {
                    "rule": "!has(self.preprocessing) || self.preprocessing.mode != 'transformer' || self.backend == 'kserve'",
                    "message": "preprocessing.mode transformer needs backend kserve",
                },
                {
                    "rule": "!has(self.preprocessing) || self.preprocessing.mode != 'transformer' || self.runtime == 'kserve'",
                    "message": "preprocessing.mode transformer needs runtime kserve (TorchServe does features inline)",
                },
                {
                    "rule": "self.runtime != 'torchserve' || !has(self.autoscaling) || !has(self.autoscaling.metric) || "
                    "!(self.autoscaling.metric == 'latency' || (self.backend == 'standalone' && "
                    "(self.autoscaling.metric == 'rps' || self.autoscaling.metric == 'concurrency')))",
                    "message": TORCHSERVE_METRICS,
                },
                {
                    "rule": "self.backend == 'standalone' || !has(self.canary) || "
                    "(!has(self.canary.analysis) && (!has(self.canary.shadow) || !self.canary.shadow))",
                    "message": CANARY_DELIVERY,
                },
                {
                    "rule": "self.backend != 'kserve' || !has(self.autoscaling) || "
                    "!has(self.autoscaling.scaleDownStabilizationSeconds) || "
                    "(has(self.autoscaling.metric) && self.autoscaling.metric == 'latency')",
                    "message": SCALE_DOWN_WINDOW,
                },
                {
                    "rule": "!has(self.retrieval) || !has(self.retrieval.candidates) || "
                    "self.retrieval.candidates <= (has(self.ranking) && has(self.ranking.maxCandidates) ? "
                    "self.ranking.maxCandidates : 1000)",
                    "message": RETRIEVAL_FITS,
                },
            ]
        }
    )
    model: ModelSource = Field(description="The packaged model to serve.")
    runtime: Runtime = Field(
        "kserve", description="Model server in the pod: kserve (our KServe ModelServer) or torchserve."
    )
    backend: Backend = Field(
        "kserve", description="kserve: an InferenceService. standalone: Deployment + Service + HPA."
    )
    ranking: RankingSpec = Field(default_factory=RankingSpec, description="Limits of a ranking request.")
    preprocessing: PreprocessingSpec = Field(default_factory=PreprocessingSpec, description="Where features are built.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Compute per replica.")
    placement: PlacementSpec = Field(
        default_factory=PlacementSpec, description="Node selection, merged with GPU defaults."
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Replica range and scaling signal."
    )
    batching: BatchingSpec = Field(default_factory=BatchingSpec, description="Request batching.")
    server: ServerSpec = Field(default_factory=ServerSpec, description="Limits and shutdown of each replica.")
    optimization: OptimizationSpec = Field(
        default_factory=OptimizationSpec, description="Precision, compilation, quality gate."
    )
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Per-user computation cache.")
    retrieval: RetrievalSpec = Field(
        default_factory=RetrievalSpec, description="Candidates from the catalog index for requests that send none."
    )
    canary: CanarySpec | None = Field(None, description="Optional canary model version.")
    ingress: IngressSpec = Field(default_factory=IngressSpec, description="Ingress (backend standalone).")
    image: str = Field("", max_length=512, description="Overrides the model-server image.")

    @model_validator(mode="after")
    def _transformer_needs_kserve(self) -> RecModelSpec:
        # The same rules as the CRD's CEL validations, so every entry point refuses the same specs.
        if self.preprocessing.mode == "transformer" and self.backend != "kserve":
            raise ValueError("preprocessing.mode transformer needs backend kserve")
        if self.preprocessing.mode == "transformer" and self.runtime != "kserve":
            raise ValueError("preprocessing.mode transformer needs runtime kserve (TorchServe does features inline)")
        if self.runtime == "torchserve" and self.scales_on_model_metrics:
            raise ValueError(TORCHSERVE_METRICS)
        if self.canary is not None and self.backend != "standalone" and (self.canary.analysis or self.canary.shadow):
            raise ValueError(CANARY_DELIVERY)
        window = self.autoscaling.scale_down_stabilization_seconds
        if window is not None and self.backend == "kserve" and self.autoscaling.metric != "latency":
            raise ValueError(SCALE_DOWN_WINDOW)
        if self.retrieval.candidates > self.ranking.max_candidates:
            raise ValueError(RETRIEVAL_FITS)
        return self

    @property
    def scales_on_model_metrics(self) -> bool:
        """KEDA on a Prometheus query of the model server's own series (not KServe's autoscaler)."""
        metric = self.autoscaling.metric
        return metric == "latency" or (self.backend == "standalone" and metric in ("rps", "concurrency"))


class Condition(ApiModel):
    """A status condition, as Kubernetes writes them."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="Ready, Reconciled or Schedulable.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason.")
    message: str = Field("", description="What happened, for a person.")
    last_transition_time: str | None = Field(None, description="When status last changed.")
    observed_generation: int | None = Field(None, description="Generation this condition describes.")


class ReplicaStatus(ApiModel):
    """Replica counts of the predictor."""

    desired: int = Field(0, description="Replicas wanted.")
    ready: int = Field(0, description="Replicas ready.")


class CanaryMetric(ApiModel):
    """One measurement of the canary analysis against its threshold."""

    name: str = Field(description="p95Ms, errorRate, agreement or requests.")
    value: float | None = Field(None, description="Measured over the step's window (none: no data yet).")
    threshold: float | None = Field(None, description="The limit from the spec.")
    ok: bool | None = Field(None, description="Whether the value is within its threshold (none: not judged).")


class CanaryStatus(ApiModel):
    """Where the canary's progressive delivery stands."""

    storage_uri: str = Field(description="The canary this analysis is about.")
    decision: Literal["Progressing", "Promoted", "RolledBack", "Shadow", "Manual"] = Field(
        description="Progressing through the steps, Promoted, RolledBack (weight 0), Shadow (mirrored only), "
        "or Manual (trafficPercent, no analysis)."
    )
    step: int = Field(0, description="The current step, from 1 (0: none).")
    weight: int = Field(0, description="Percent of live traffic on the canary now.")
    step_started_at: str | None = Field(None, description="When the current step began.")
    evaluated_at: str | None = Field(None, description="When the metrics were last read.")
    message: str = Field("", description="The last decision, for a person.")
    metrics: list[CanaryMetric] = Field(default_factory=list, description="The last measurements.")


class RecModelStatus(ApiModel):
    """What the operator observed, recomputed from the children each time."""

    model_config = ConfigDict(extra="allow")
    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None = Field(None, description="Summary.")
    observed_generation: int | None = Field(None, description="Spec generation last reconciled.")
    url: str | None = Field(None, description="Where requests go.")
    replicas: ReplicaStatus | None = Field(None, description="Replica counts.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Reconciled, Schedulable.")
    canary: CanaryStatus | None = Field(None, description="The canary's traffic weight and analysis.")
