"""One reconciliation: parse, render the whole desired state, check it, apply what differs,
prune what is no longer wanted, and recompute status from what exists."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from recmodel_operator import FIELD_MANAGER
from recmodel_operator.drift import contains
from recmodel_operator.kube import KindNotInstalled, Kube, api_error_message
from recmodel_operator.render import inference_service
from recmodel_operator.render.autoscaling import DEFAULT_PROMETHEUS_URL
from recmodel_operator.render.context import DEFAULT_SERVER_IMAGE, Owner, RenderContext
from recmodel_operator.render.desired import (
    ALL_CHILD_KINDS,
    DEPLOYMENT,
    INFERENCE_SERVICE,
    SCALED_OBJECT,
    ChildKind,
    kind_of,
    render_children,
)
from recmodel_operator.spec import RecModelSpec
from recmodel_operator.status import Observation, compute_status, failed_status, same_status, stamp

Obj = dict[str, Any]
MAX_NAME_LENGTH = 45  # leaves room for "-predictor-canary" and KServe's own suffixes within 63


@dataclass(frozen=True)
class Settings:
    server_image: str = DEFAULT_SERVER_IMAGE
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    ingress_domain: str = "example.com"


@dataclass(frozen=True)
class Outcome:
    status: Obj
    applied: int  # children written this time
    pruned: int
    status_written: bool


class SpecError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


def parse_spec(name: str, raw_spec: Obj) -> RecModelSpec:
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(
            "NameTooLong",
            f"metadata.name has {len(name)} characters; at most {MAX_NAME_LENGTH} leave room for child names",
        )
    try:
        return RecModelSpec.model_validate(raw_spec)
    except ValidationError as error:
        raise SpecError("InvalidSpec", describe_validation_error(error)) from error


_MISSING_KIND_HINTS = {
    INFERENCE_SERVICE: ("KServeNotInstalled", "set spec.backend: standalone, or install KServe"),
    SCALED_OBJECT: ("KEDANotInstalled", "install KEDA, or use autoscaling.metric cpu or memory"),
}


def _check_kinds_served(kube: Kube, children: list[Obj]) -> None:
    for kind in {kind_of(child) for child in children}:
        if not kube.serves(kind):
            reason, hint = _MISSING_KIND_HINTS.get(kind, ("KindNotInstalled", "install its CRD"))
            raise SpecError(reason, f"the cluster does not serve {kind.kind} ({kind.api_version}): {hint}")


def _dry_run(kube: Kube, children: list[Obj]) -> None:
    """Every child must pass the API server's validation before any is written."""
    for child in children:
        try:
            kube.apply(child, dry_run=True)
        except ApiException as error:
            raise SpecError(
                "ChildRejected", f"{child['kind']}/{child['metadata']['name']}: {api_error_message(error)}"
            ) from error


def _instance_selector(name: str) -> str:
    return f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by={FIELD_MANAGER}"


def _prune(kube: Kube, owner: Owner, children: list[Obj]) -> int:
    wanted = {(kind_of(c), c["metadata"]["name"]) for c in children}
    pruned = 0
    for kind in ALL_CHILD_KINDS:
        if not kube.serves(kind):
            continue
        for live in kube.list(kind, owner.namespace, _instance_selector(owner.name)):
            refs = live["metadata"].get("ownerReferences") or []
            ours = any(ref.get("uid") == owner.uid for ref in refs)
            if ours and (kind, live["metadata"]["name"]) not in wanted:
                kube.delete(kind, owner.namespace, live["metadata"]["name"])
                pruned += 1
    return pruned


def _observe(kube: Kube, context: RenderContext, children: list[Obj]) -> Observation:
    owner = context.owner
    live = [obj for obj in (kube.get(kind_of(c), owner.namespace, c["metadata"]["name"]) for c in children) if obj]
    pod_selectors = [f"app.kubernetes.io/instance={owner.name}"]
    if context.spec.backend == "kserve":
        # KServe creates the predictor Deployment and pods itself (RawDeployment mode).
        kserve_deployment = kube.get(
            DEPLOYMENT, owner.namespace, inference_service.predictor_deployment_name(owner.name)
        )
        if kserve_deployment:
            live.append(kserve_deployment)
        pod_selectors.append(f"serving.kserve.io/inferenceservice={owner.name}")
    pods = [p for selector in pod_selectors for p in kube.list(ChildKind("v1", "Pod"), owner.namespace, selector)]
    nodes = kube.list(ChildKind("v1", "Node")) if context.spec.resources.gpu.count > 0 else []
    return Observation(children=live, pods=pods, nodes=nodes)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(kube: Kube, body: Obj, settings: Settings) -> Outcome:
    meta = body["metadata"]
    owner = Owner(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=int(meta.get("generation", 1))
    )
    previous = body.get("status") or {}
    applied = pruned = 0
    try:
        spec = parse_spec(owner.name, body.get("spec") or {})
        context = RenderContext(
            owner=owner, spec=spec, server_image=settings.server_image, ingress_domain=settings.ingress_domain
        )
        children = render_children(context, settings.prometheus_url)
        _check_kinds_served(kube, children)
        stale = [c for c in children if not contains(kube.get(kind_of(c), owner.namespace, c["metadata"]["name"]), c)]
        if stale:
            _dry_run(kube, stale)
            for child in stale:
                kube.apply(child)
            applied = len(stale)
        pruned = _prune(kube, owner, children)
        new_status = compute_status(context, _observe(kube, context, children))
    except SpecError as error:
        new_status = failed_status(owner.generation, error.reason, error.message)
    except KindNotInstalled as error:
        new_status = failed_status(owner.generation, "KindNotInstalled", f"the cluster does not serve {error}")
    written = False
    if not same_status(previous, new_status):
        new_status = stamp(new_status, previous, _now())
        cleared = {key: None for key in ("url", "replicas") if key in previous and key not in new_status}
        kube.patch_recmodel_status(owner.namespace, owner.name, {**cleared, **new_status})
        written = True
    return Outcome(status=new_status, applied=applied, pruned=pruned, status_written=written)
