"""The Kubernetes kinds the operator reads and writes, and where each lives in the REST API (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChildKind:
    api_version: str
    kind: str
    plural: str = ""
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def builtin(self) -> bool:
        """Served by every API server (no CRD needed)."""
        return self.group in BUILTIN_GROUPS

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (or of one object, with `name`)."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        where = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        return f"{prefix}{where}/{self.plural}" + (f"/{name}" if name else "")

    def __str__(self) -> str:
        return f"{self.kind} ({self.api_version})"


BUILTIN_GROUPS = frozenset(
    {"", "apps", "autoscaling", "networking.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io"}
)

RECMODEL = ChildKind("recmodel.dev/v1alpha1", "RecModel", "recmodels")
DEPLOYMENT = ChildKind("apps/v1", "Deployment", "deployments")
SERVICE = ChildKind("v1", "Service", "services")
INGRESS = ChildKind("networking.k8s.io/v1", "Ingress", "ingresses")
HPA = ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
SCALED_OBJECT = ChildKind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
INFERENCE_SERVICE = ChildKind("serving.kserve.io/v1beta1", "InferenceService", "inferenceservices")
KNATIVE_SERVICE = ChildKind("serving.knative.dev/v1", "Service", "services")  # read: is Knative installed?
POD = ChildKind("v1", "Pod", "pods")
NODE = ChildKind("v1", "Node", "nodes", namespaced=False)
EVENT = ChildKind("v1", "Event", "events")
LEASE = ChildKind("coordination.k8s.io/v1", "Lease", "leases")
CRD = ChildKind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)

# Every kind a RecModel may own, in the order children are applied.
ALL_CHILD_KINDS = (INFERENCE_SERVICE, DEPLOYMENT, SERVICE, INGRESS, HPA, SCALED_OBJECT)
_BY_KIND = {(k.api_version, k.kind): k for k in (*ALL_CHILD_KINDS, RECMODEL, POD, NODE, EVENT, LEASE, CRD)}


def kind_of(obj: dict[str, object]) -> ChildKind:
    """The known kind of an object (its plural included)."""
    key = (str(obj["apiVersion"]), str(obj["kind"]))
    try:
        return _BY_KIND[key]
    except KeyError:
        raise ValueError(f"unknown kind {key[1]} ({key[0]})") from None
