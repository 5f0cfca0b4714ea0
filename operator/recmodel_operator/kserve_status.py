"""Why an InferenceService is not Ready, in KServe's own words (pure).

KServe (pkg/apis/serving/v1beta1/inference_service_status.go) writes `Ready` as the conjunction
of `PredictorReady` and `IngressReady` (plus `TransformerReady` with a transformer), and, when a
model cannot be placed or loaded, `status.modelStatus.lastFailureInfo` with a reason such as
`NoSupportingRuntime`, `RuntimeNotRecognized`, `ModelLoadFailed` or `RuntimeUnhealthy`. The
kubelet writes why a container waits (`ImagePullBackOff`, `CrashLoopBackOff`). Past
`NOT_READY_BOUND_SECONDS`, the message also names the usual causes.
"""

from __future__ import annotations

import datetime
from typing import Any

from recmodel_operator.timestamps import parse_time

Obj = dict[str, Any]

NOT_READY_BOUND_SECONDS = 180.0
KSERVE_CONDITIONS = ("PredictorReady", "IngressReady")
WAITING_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError"}
)
_HINTS = {
    "NoSupportingRuntime": "no ServingRuntime supports the model format: install the chart's ClusterServingRuntime",
    "RuntimeNotRecognized": "the ServingRuntime named is not installed: install the chart's ClusterServingRuntime",
    "RuntimeDisabled": "the ServingRuntime is disabled",
    "ModelLoadFailed": "the model server could not load the model: check spec.model.storageUri and the pod's logs",
    "RuntimeUnhealthy": "the model server's container does not start or fails its probes: see the pod's events",
}
BLOCKED = ("InvalidSpec", "BlockedByFailedLoad")  # transitionStatus while lastFailureInfo holds
RUNTIME_REASONS = ("NoSupportingRuntime", "RuntimeNotRecognized", "RuntimeDisabled")
USUAL_CAUSES = (
    "usual causes: the KServe controller is not running (kubectl -n kserve get pods), the ServingRuntime is not "
    "installed, the image cannot be pulled, the model cannot be downloaded (the storage-initializer's logs)"
)


def _conditions(isvc: Obj) -> dict[str, Obj]:
    return {str(c.get("type")): c for c in (isvc.get("status") or {}).get("conditions") or []}


def waiting_since(isvc: Obj) -> datetime.datetime | None:
    """When KServe's Ready last changed (or the InferenceService was created, before it writes any)."""
    ready = _conditions(isvc).get("Ready") or {}
    return parse_time(ready.get("lastTransitionTime")) or parse_time(isvc["metadata"].get("creationTimestamp"))


def seconds_to_bound(isvc: Obj, now: datetime.datetime) -> float | None:
    since = waiting_since(isvc)
    if since is None:
        return None
    left = NOT_READY_BOUND_SECONDS - (now - since).total_seconds()
    return left if left > 0 else None


def waiting_containers(pods: list[Obj]) -> str | None:
    """The kubelet's words for a container that cannot start."""
    for pod in pods:
        statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
        statuses = [*statuses, *((pod.get("status") or {}).get("containerStatuses") or [])]
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in WAITING_REASONS:
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                return (
                    f"pod {pod['metadata']['name']}: container {container.get('name')} is {waiting['reason']}{detail}"
                )
    return None


def not_ready_message(isvc: Obj, pods: list[Obj], now: datetime.datetime, transformer: bool = False) -> str:
    model_status = (isvc.get("status") or {}).get("modelStatus") or {}
    failure = model_status.get("lastFailureInfo") or {}
    if failure.get("reason") and model_status.get("transitionStatus") in BLOCKED:
        reason = str(failure["reason"])
        where = f" ({failure['location']})" if failure.get("location") else ""
        runtime = (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("runtime")
        hint = f"; {_HINTS[reason]}" if reason in _HINTS else ""
        hint += f" ({runtime})" if runtime and reason in RUNTIME_REASONS else ""
        return f"KServe reports {reason}{where}: {failure.get('message') or 'no detail'}{hint}"
    parts = []
    conditions = _conditions(isvc)
    for kind in (*KSERVE_CONDITIONS, *(("TransformerReady",) if transformer else ())):
        condition = conditions.get(kind)
        if condition is None:
            parts.append(f"KServe has not set {kind}")
        elif condition.get("status") != "True":
            words = ": ".join(str(w) for w in (condition.get("reason"), condition.get("message")) if w)
            parts.append(f"KServe's {kind} is {condition.get('status')}" + (f" ({words})" if words else ""))
    if (container := waiting_containers(pods)) is not None:
        parts.append(container)
    message = "; ".join(parts) or "waiting for KServe to report the InferenceService Ready"
    since = waiting_since(isvc)
    if since is not None and (now - since).total_seconds() >= NOT_READY_BOUND_SECONDS:
        message += f"; not Ready for over {NOT_READY_BOUND_SECONDS:.0f}s: {USUAL_CAUSES}"  # no clock: no rewrites
    return message
