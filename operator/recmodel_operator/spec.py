"""The RecModel v1alpha1 API as pydantic models: the operator parses every spec with these,
and the CRD's OpenAPI schema is generated from them (`recmodel_operator.crd`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
STORAGE_URI_PATTERN = r"^(s3|gs|pvc|https?|file)://.+$"
CEL = "x-kubernetes-validations"

Runtime = Literal["kserve", "torchserve"]
Backend = Literal["kserve", "standalone"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]
Metric = Literal["cpu", "memory", "concurrency", "rps", "latency"]


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
            CEL: [{"rule": "self.topK <= self.maxCandidates", "message": "topK must not exceed maxCandidates"}]
        }
    )
    top_k: int = Field(50, ge=1, le=10000, description="Items returned when the request does not say.")
    max_candidates: int = Field(
        1000, ge=1, le=100000, description="Candidates accepted per request; more get HTTP 400."
    )


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


class BatchingSpec(ApiModel):
    """Request batching in the model server: concurrent requests share one forward pass."""

    max_batch_size: int = Field(32, ge=1, le=1024, description="Most requests in one batch.")
    max_latency_ms: int = Field(5, ge=0, le=1000, description="Longest wait for a batch to fill, in milliseconds.")


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


class CanarySpec(ApiModel):
    """A second model version that takes part of the traffic."""

    storage_uri: str = Field(pattern=STORAGE_URI_PATTERN, description="URI of the canary model.")
    traffic_percent: int = Field(10, ge=1, le=99, description="Share of requests, 1-99, sent to the canary.")


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
    optimization: OptimizationSpec = Field(
        default_factory=OptimizationSpec, description="Precision, compilation, quality gate."
    )
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Per-user computation cache.")
    canary: CanarySpec | None = Field(None, description="Optional canary model version.")
    ingress: IngressSpec = Field(default_factory=IngressSpec, description="Ingress (backend standalone).")
    image: str = Field("", max_length=512, description="Overrides the model-server image.")


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


class RecModelStatus(ApiModel):
    """What the operator observed, recomputed from the children each time."""

    model_config = ConfigDict(extra="allow")
    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None = Field(None, description="Summary.")
    observed_generation: int | None = Field(None, description="Spec generation last reconciled.")
    url: str | None = Field(None, description="Where requests go.")
    replicas: ReplicaStatus | None = Field(None, description="Replica counts.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Reconciled, Schedulable.")
