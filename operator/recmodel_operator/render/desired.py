"""The whole desired state of one RecModel: every child, in the order they are applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recmodel_operator.render import autoscaling, inference_service, standalone
from recmodel_operator.render.context import RenderContext

Obj = dict[str, Any]

PROMETHEUS_METRICS = ("concurrency", "rps", "latency")


@dataclass(frozen=True)
class ChildKind:
    api_version: str
    kind: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


DEPLOYMENT = ChildKind("apps/v1", "Deployment")
SERVICE = ChildKind("v1", "Service")
INGRESS = ChildKind("networking.k8s.io/v1", "Ingress")
HPA = ChildKind("autoscaling/v2", "HorizontalPodAutoscaler")
SCALED_OBJECT = ChildKind("keda.sh/v1alpha1", "ScaledObject")
INFERENCE_SERVICE = ChildKind("serving.kserve.io/v1beta1", "InferenceService")

ALL_CHILD_KINDS = (INFERENCE_SERVICE, DEPLOYMENT, SERVICE, INGRESS, HPA, SCALED_OBJECT)


def kind_of(obj: Obj) -> ChildKind:
    return ChildKind(obj["apiVersion"], obj["kind"])


def _kserve_children(context: RenderContext, prometheus_url: str) -> list[Obj]:
    children = [inference_service.render_inference_service(context)]
    if context.spec.autoscaling.metric == "latency":
        target = inference_service.predictor_deployment_name(context.owner.name)
        children.append(autoscaling.render_scaled_object(context, target, prometheus_url))
    return children


def _standalone_children(context: RenderContext, prometheus_url: str) -> list[Obj]:
    spec = context.spec
    deployment = standalone.deployment_name(context.owner.name)
    children = [standalone.render_deployment(context), standalone.render_service(context)]
    if spec.canary is not None:
        children.append(standalone.render_deployment(context, track="canary"))
    if spec.ingress.enabled:
        children.append(standalone.render_ingress(context))
    if spec.autoscaling.min_replicas != spec.autoscaling.max_replicas:
        if spec.autoscaling.metric in PROMETHEUS_METRICS:
            children.append(autoscaling.render_scaled_object(context, deployment, prometheus_url))
        else:
            children.append(autoscaling.render_hpa(context, deployment))
    return children


def render_children(context: RenderContext, prometheus_url: str = autoscaling.DEFAULT_PROMETHEUS_URL) -> list[Obj]:
    if context.spec.backend == "kserve":
        return _kserve_children(context, prometheus_url)
    return _standalone_children(context, prometheus_url)
