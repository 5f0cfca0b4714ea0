"""RecModel status, computed level-based from what exists (pure: observations in, status out)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from recmodel_operator import reasons
from recmodel_operator.conditions import ConditionStatus, ConditionType, Phase
from recmodel_operator.kserve_status import not_ready_message, waiting_containers
from recmodel_operator.quantity import parse_quantity
from recmodel_operator.render.context import RenderContext
from recmodel_operator.render.pod import GPU_PRODUCT_LABEL, GPU_RESOURCE
from recmodel_operator.spec import RecModelSpec

Obj = dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """What the operator saw in the cluster for one RecModel."""

    children: list[Obj] = field(default_factory=list)  # our live children
    pods: list[Obj] = field(default_factory=list)
    nodes: list[Obj] = field(default_factory=list)
    managed: list[Obj] = field(default_factory=list)  # what KServe made of our InferenceService
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))


def _condition(kind: ConditionType, ok: bool | None, reason: str, message: str) -> Obj:
    status = ConditionStatus.UNKNOWN if ok is None else (ConditionStatus.TRUE if ok else ConditionStatus.FALSE)
    return {"type": str(kind), "status": str(status), "reason": reason, "message": message}


def _find(children: list[Obj], kind: str, name: str | None = None) -> Obj | None:
    for child in children:
        if child.get("kind") == kind and (name is None or child["metadata"]["name"] == name):
            return child
    return None


def _ready_condition(obj: Obj) -> Obj | None:
    for condition in obj.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == "Ready":  # KServe's own condition type, spelt as ours
            return dict(condition)
    return None


def unschedulable_message(pods: list[Obj]) -> str | None:
    """The scheduler's own words, when it could not place a pod."""
    for pod_obj in pods:
        for condition in pod_obj.get("status", {}).get("conditions", []) or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return str(condition.get("message") or condition.get("reason") or "Unschedulable")
    return None


def _quantity(value: str) -> float:
    try:
        return float(parse_quantity(value))
    except ValueError:
        return 0.0


def gpu_capacity_problem(spec: RecModelSpec, nodes: list[Obj]) -> str | None:
    """Says why no node could ever hold one replica's GPUs (None when one could)."""
    gpu = spec.resources.gpu
    if gpu.count == 0:
        return None
    wanted = dict(spec.placement.node_selector)
    if gpu.product:
        wanted[GPU_PRODUCT_LABEL] = gpu.product
    for node in nodes:
        labels = node["metadata"].get("labels", {}) or {}
        allocatable = node.get("status", {}).get("allocatable", {}) or {}
        if (
            all(labels.get(k) == v for k, v in wanted.items())
            and _quantity(allocatable.get(GPU_RESOURCE, "0")) >= gpu.count
        ):
            return None
    where = f" with {GPU_PRODUCT_LABEL}={gpu.product}" if gpu.product else ""
    return f"no node has {gpu.count} allocatable {GPU_RESOURCE}{where}"


def _replicas(context: RenderContext, children: list[Obj]) -> tuple[int, int]:
    """(desired, ready) of the predictor Deployments (KServe creates them in RawDeployment mode)."""
    deployments = [c for c in children if c.get("kind") == "Deployment"]
    if not deployments:
        return max(context.spec.autoscaling.min_replicas, 1), 0
    desired = sum(int(d.get("spec", {}).get("replicas", 1) or 0) for d in deployments)
    # An autoscaler raises replicas to minReplicas shortly after creation: not ready before.
    desired = max(desired, context.spec.autoscaling.min_replicas)
    ready = sum(int(d.get("status", {}).get("readyReplicas", 0) or 0) for d in deployments)
    return desired, ready


def _url(context: RenderContext, children: list[Obj]) -> str | None:
    isvc = _find(children, "InferenceService")
    if context.spec.backend == "kserve":
        url = (isvc or {}).get("status", {}).get("url")  # what KServe reports, once it does
        return str(url) if url else None
    ingress = _find(children, "Ingress")
    if ingress is not None:
        return f"http://{ingress['spec']['rules'][0]['host']}"
    return f"http://{context.owner.name}.{context.owner.namespace}.svc.cluster.local"


def _serving(context: RenderContext, observation: Observation, desired: int, ready: int) -> tuple[bool, str, str]:
    isvc = _find(observation.children, "InferenceService")
    if isvc is not None:
        condition = _ready_condition(isvc)
        if condition and condition.get("status") == ConditionStatus.TRUE:
            return True, reasons.INFERENCE_SERVICE_READY, "InferenceService is Ready"
        transformer = context.spec.preprocessing.mode == "transformer"
        message = not_ready_message(isvc, observation.pods, observation.now, transformer)
        return False, reasons.INFERENCE_SERVICE_NOT_READY, message
    if desired > 0 and ready >= desired:
        return True, reasons.AVAILABLE, f"{ready}/{desired} replicas ready"
    waiting = waiting_containers(observation.pods)
    return False, reasons.REPLICAS_NOT_READY, f"{ready}/{desired} replicas ready" + (f"; {waiting}" if waiting else "")


def failed_status(generation: int, reason: str, message: str) -> Obj:
    """The spec cannot be served as written: say why, on both conditions."""
    return {
        "phase": str(Phase.FAILED),
        "observedGeneration": generation,
        "conditions": [
            _condition(ConditionType.READY, False, reason, message),
            _condition(ConditionType.RECONCILED, False, reason, message),
        ],
    }


def compute_status(context: RenderContext, observation: Observation, problem: tuple[str, str] | None = None) -> Obj:
    """Phase, URL, replica counts and conditions (without timestamps; see `stamp`).

    `problem` (reason, message) is a spec change that could not be applied: what runs keeps
    serving the previous version, and Reconciled says why the new one is not there.
    """
    generation = context.owner.generation
    children = observation.children
    desired, ready = _replicas(context, [*children, *observation.managed])
    serving, ready_reason, ready_message = _serving(context, observation, desired, ready)
    if problem is not None and not serving:
        ready_reason, ready_message = problem
    unschedulable = unschedulable_message(observation.pods)
    if unschedulable is not None:
        schedulable = _condition(ConditionType.SCHEDULABLE, False, reasons.UNSCHEDULABLE, unschedulable)
    else:
        capacity = gpu_capacity_problem(context.spec, observation.nodes)
        schedulable = (
            _condition(ConditionType.SCHEDULABLE, False, reasons.NO_MATCHING_NODES, capacity)
            if capacity
            else _condition(
                ConditionType.SCHEDULABLE, True, reasons.NODES_AVAILABLE, "a node can hold every replica's resources"
            )
        )
    reconciled = problem or (reasons.APPLIED, f"{len(children)} children match the spec")
    if problem is not None and problem[0] not in reasons.SPEC_PROBLEMS:  # temporary: being retried
        phase = Phase.DEGRADED if serving else Phase.PROGRESSING
    elif problem is not None:
        phase = Phase.DEGRADED if serving else Phase.FAILED
    elif serving:
        phase = Phase.READY
    elif schedulable["status"] == ConditionStatus.FALSE:
        phase = Phase.DEGRADED if ready > 0 else Phase.PENDING
    else:
        phase = Phase.PROGRESSING
    status: Obj = {
        "phase": str(phase),
        "observedGeneration": generation,
        "replicas": {"desired": desired, "ready": ready},
        "conditions": [
            _condition(ConditionType.READY, serving, ready_reason, ready_message),
            _condition(ConditionType.RECONCILED, problem is None, *reconciled),
            schedulable,
        ],
    }
    url = _url(context, children)
    if url:
        status["url"] = url
    return status


def stamp(new: Obj, previous: Obj | None, now: str) -> Obj:
    """Adds lastTransitionTime, kept from `previous` while a condition's status is unchanged."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions", []) or []}
    conditions = []
    for condition in new.get("conditions", []):
        old = before.get(condition["type"])
        unchanged = old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime")
        conditions.append(
            {
                **condition,
                "lastTransitionTime": old["lastTransitionTime"] if unchanged and old else now,
                "observedGeneration": new.get("observedGeneration"),
            }
        )
    return {**new, "conditions": conditions}


def same_status(a: Obj | None, b: Obj | None) -> bool:
    """Equal apart from timestamps: then there is nothing to write."""

    def strip(status: Obj | None) -> Obj:
        status = dict(status or {})
        status["conditions"] = [
            {k: v for k, v in c.items() if k not in ("lastTransitionTime", "observedGeneration")}
            for c in status.get("conditions", []) or []
        ]
        return {
            k: v
            for k, v in status.items()
            if k in ("phase", "observedGeneration", "url", "replicas", "conditions", "canary")
        }

    return strip(a) == strip(b)
