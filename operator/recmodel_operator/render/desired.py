"""The whole desired state of one RecModel: every child, in the order they are applied."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from recmodel_operator.render import autoscaling, inference_service, standalone
from recmodel_operator.render.context import RenderContext

Obj = dict[str, Any]

PROMETHEUS_METRICS = ("concurrency", "rps", "latency")


HASH_ANNOTATION = "recmodel.dev/desired-hash"


def desired_hash(child: Obj) -> str:
    """A digest of everything we would send: any change of desired state (a removal too) changes it."""
    text = json.dumps(child, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_hash(child: Obj) -> Obj:
    """The child with its own desired-state digest as an annotation (compared on every pass)."""
    metadata = {**child["metadata"]}
    metadata["annotations"] = {**metadata.get("annotations", {}), HASH_ANNOTATION: desired_hash(child)}
    return {**child, "metadata": metadata}


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
        if context.mirror:
            children.append(standalone.render_canary_service(context))
    if spec.ingress.enabled:
        children.append(standalone.render_ingress(context))
    if spec.autoscaling.min_replicas != spec.autoscaling.max_replicas:
        if spec.autoscaling.metric in PROMETHEUS_METRICS:
            children.append(autoscaling.render_scaled_object(context, deployment, prometheus_url))
        else:
            children.append(autoscaling.render_hpa(context, deployment))
    return children


def render_children(context: RenderContext, prometheus_url: str = autoscaling.DEFAULT_PROMETHEUS_URL) -> list[Obj]:
    """Every child, each stamped with the digest of its desired state."""
    if context.spec.backend == "kserve":
        children = _kserve_children(context, prometheus_url)
    else:
        children = _standalone_children(context, prometheus_url)
    return [with_hash(child) for child in children]
