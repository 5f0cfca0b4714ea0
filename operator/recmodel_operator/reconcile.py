"""One reconciliation of one RecModel: parse, render the whole desired state, apply every child
whose desired state changed or that someone else changed, prune what is no longer wanted, and
recompute status from what exists. Reads come from the informers' cache (`View`); writes go
through `Kube`; deciding what to write is pure (`drift`, `render`, `status`)."""

from __future__ import annotations

import datetime
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from recmodel_operator import analysis, reasons
from recmodel_operator.conditions import ConditionType
from recmodel_operator.conflicts import MAX_DELAY, Contest, Contests
from recmodel_operator.drift import conflicting_lists, contains, differences, pointer, value_at
from recmodel_operator.kinds import INFERENCE_SERVICE, KNATIVE_SERVICE, RECMODEL, SCALED_OBJECT, ChildKind, kind_of
from recmodel_operator.kserve_status import seconds_to_bound
from recmodel_operator.kube import ApiError, Kube
from recmodel_operator.prometheus import MetricsUnavailable
from recmodel_operator.render.autoscaling import DEFAULT_PROMETHEUS_URL
from recmodel_operator.render.context import DEFAULT_SERVER_IMAGE, Owner, RenderContext
from recmodel_operator.render.desired import HASH_ANNOTATION, render_children
from recmodel_operator.render.inference_service import DEPLOYMENT_MODE_ANNOTATION, deployment_mode, knative_features
from recmodel_operator.spec import RecModelSpec
from recmodel_operator.status import Observation, compute_status, failed_status, same_status, stamp
from recmodel_operator.timestamps import parse_time
from recmodel_operator.writers import writers_of

Obj = dict[str, Any]
ChildKey = tuple[str, str, str]  # (plural, namespace, name)
MAX_NAME_LENGTH = 45  # leaves room for "-predictor-canary" and KServe's own suffixes within 63
RECHECK_REJECTED_SECONDS = 60.0  # a rejected generation is asked about again after this
LEGACY_FINALIZER = "recmodel.dev/finalizer"  # written by operator versions before 0.2; never needed


class MetricsReader(Protocol):
    """Where the canary analysis reads its measurements (Prometheus)."""

    def measure(self, queries: dict[str, str]) -> analysis.Measurements: ...


@dataclass(frozen=True)
class Settings:
    server_image: str = DEFAULT_SERVER_IMAGE
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    ingress_domain: str = "example.com"
    metrics: MetricsReader | None = None  # None: canaries are not analysed (they hold their step)


class View(Protocol):
    """What a reconcile reads: the informers' cache."""

    def child(self, kind: ChildKind, namespace: str, name: str) -> Obj | None: ...
    def owned_children(self, owner: str) -> list[Obj]: ...
    def managed(self, owner: str) -> list[Obj]: ...
    def pods(self, owner: str) -> list[Obj]: ...
    def gpu_nodes(self) -> list[Obj]: ...
    def served(self, kind: ChildKind) -> bool: ...
    def remember(self, obj: Obj) -> None: ...


@dataclass
class Outcome:
    status: Obj | None  # None: nothing to report (the RecModel is being deleted)
    applied: list[str] = field(default_factory=list)  # "Kind/name" of children written
    pruned: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # lists replaced whole before an apply
    restored: list[str] = field(default_factory=list)  # applied again against a contending writer
    problem: tuple[str, str] | None = None
    status_written: bool = False
    retry: ApiError | None = None  # a temporary failure, reported in status and then retried
    finalizer_removed: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None  # look again then, though nothing changes meanwhile


class SpecError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"spec.{where}: {message}" if where else f"spec: {message}")
    return "; ".join(parts)


def parse_spec(name: str, raw_spec: Obj) -> RecModelSpec:
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError(
            reasons.NAME_TOO_LONG,
            f"metadata.name has {len(name)} characters; at most {MAX_NAME_LENGTH} leave room for child names",
        )
    try:
        return RecModelSpec.model_validate(raw_spec)
    except ValidationError as error:
        raise SpecError(reasons.INVALID_SPEC, describe_validation_error(error)) from error


_MISSING_KIND_HINTS = {
    INFERENCE_SERVICE: (reasons.KSERVE_NOT_INSTALLED, "set spec.backend: standalone, or install KServe"),
    SCALED_OBJECT: (reasons.KEDA_NOT_INSTALLED, "install KEDA, or use autoscaling.metric cpu or memory"),
}


def _check_kinds_served(view: View, children: list[Obj]) -> None:
    for kind in dict.fromkeys(kind_of(child) for child in children):
        if not view.served(kind):
            reason, hint = _MISSING_KIND_HINTS.get(kind, (reasons.KIND_NOT_INSTALLED, "install its CRD"))
            raise SpecError(reason, f"the cluster does not serve {kind}: {hint}")


def _check_kserve_mode(view: View, context: RenderContext) -> None:
    """KServe's deployment mode is chosen once per InferenceService (its webhook refuses a change),
    and its Knative mode needs Knative Serving installed."""
    spec, owner = context.spec, context.owner
    if spec.backend != "kserve":
        return
    needs = knative_features(spec)
    if needs and not view.served(KNATIVE_SERVICE):
        raise SpecError(
            reasons.KNATIVE_NOT_INSTALLED,
            f"{' and '.join(needs)} need KServe's Knative mode, and Knative Serving is not installed: install it, "
            "or use autoscaling.metric cpu, memory or latency (or minReplicas = maxReplicas) without a canary",
        )
    live = view.child(INFERENCE_SERVICE, owner.namespace, owner.name)
    if live is None:
        return
    current = (live.get("status") or {}).get("deploymentMode") or live["metadata"].get("annotations", {}).get(
        DEPLOYMENT_MODE_ANNOTATION
    )
    legacy = {"RawDeployment": "Standard", "Serverless": "Knative"}
    current = legacy.get(str(current), current)
    if current and current != deployment_mode(spec):
        raise SpecError(
            reasons.DEPLOYMENT_MODE_FIXED,
            f"the InferenceService runs in KServe's {current} mode, which KServe never changes on an existing "
            f"InferenceService; this spec needs {deployment_mode(spec)} mode: delete the RecModel and apply it again",
        )


def child_key(obj: Obj) -> ChildKey:
    return kind_of(obj).plural, str(obj["metadata"].get("namespace", "")), str(obj["metadata"]["name"])


def _label(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def needs_apply(desired: Obj, live: Obj | None, memory: MutableMapping[ChildKey, tuple[str, str]]) -> bool:
    """Apply when the child is missing, its desired state changed, or someone changed a field we
    own. Once the server has answered an apply with an object that still differs (it normalises
    or defaults a field its own way), the same desired state is not applied again: no loops."""
    if live is None:
        return True
    if contains(live, desired):
        return False
    ours = desired["metadata"]["annotations"][HASH_ANNOTATION]
    version = str(live["metadata"].get("resourceVersion", ""))
    return memory.get(child_key(desired)) != (ours, version)


def _applied_before(desired: Obj, memory: MutableMapping[ChildKey, tuple[str, str]]) -> bool:
    """Did we apply this very desired state? (Then a difference is someone else's doing.)"""
    applied = memory.get(child_key(desired))
    return applied is not None and applied[0] == desired["metadata"]["annotations"][HASH_ANNOTATION]


def _plan(
    view: View,
    children: list[Obj],
    memory: MutableMapping[ChildKey, tuple[str, str]],
    contests: Contests,
    clock: float,
) -> list[tuple[Obj, Obj | None]]:
    """The children to apply now, with their live state. A foreign change to a child we already
    applied waits while its writer contends with us (`conflicts`)."""
    plan: list[tuple[Obj, Obj | None]] = []
    for child in children:
        key = child_key(child)
        live = view.child(kind_of(child), *key[1:])
        if not needs_apply(child, live, memory):
            contests.unchanged(key, clock)
            continue
        if live is not None and _applied_before(child, memory):
            writers = writers_of(live["metadata"].get("managedFields") or [], differences(live, child))
            if contests.changed_by_others(key, writers, clock) > 0:
                continue
        plan.append((child, live))
    return plan


def conflict_message(contested: list[tuple[str, Contest]]) -> str:
    """Who keeps changing what (stable while the contest lasts: one Warning Event for it)."""
    parts = []
    for label, contest in contested:
        named = [f'field manager "{manager}" ({", ".join(fields)})' for manager, fields in contest.writers.items()]
        parts.append(f"{label}: {' and '.join(named) or 'another client'} keeps changing fields the operator owns")
    return (
        "; ".join(parts) + "; the operator puts the spec back with a growing delay (at most every "
        f"{MAX_DELAY:.0f}s) rather than answering every write: stop the other writer, or change the RecModel"
    )


def _rejected(child: Obj, error: ApiError) -> Exception:
    if error.namespace_terminating:
        return error  # nothing to report: the RecModel goes with its namespace
    return SpecError(reasons.CHILD_REJECTED, f"{_label(child)}: {error.message}")


def _roll_back(kube: Kube, created: list[Obj], memory: MutableMapping[ChildKey, tuple[str, str]]) -> None:
    """Deletes the children this pass created, so that a rejected spec leaves nothing half-way."""
    for obj in created:
        meta = obj["metadata"]
        kube.delete(kind_of(obj), meta["namespace"], meta["name"], uid=meta.get("uid"))
        memory.pop(child_key(obj), None)


def _apply_children(
    kube: Kube,
    view: View,
    children: list[Obj],
    memory: MutableMapping[ChildKey, tuple[str, str]],
    outcome: Outcome,
    *,
    careful: bool,
    contests: Contests,
    clock: float,
) -> None:
    """Applies what needs it. A first creation goes ahead optimistically and rolls back if the
    API server rejects a child; other multi-child changes (and a spec already rejected once:
    `careful`) are dry-run first, so that a rejected spec never disturbs what runs."""
    plan = _plan(view, children, memory, contests, clock)
    creating = not careful and all(live is None for _, live in plan)
    if len(plan) > 1 and not creating:
        for child, _ in plan:
            try:
                kube.apply(child, dry_run=True)
            except ApiError as error:
                if error.temporary:
                    raise
                raise _rejected(child, error) from error
    created: list[Obj] = []
    for child, live in plan:
        if live is not None and (paths := conflicting_lists(live, child)):
            operations: list[Obj] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]}
            ]
            operations += [{"op": "replace", "path": pointer(p), "value": value_at(child, p)} for p in paths]
            try:
                kube.json_patch(kind_of(child), child["metadata"]["namespace"], child["metadata"]["name"], operations)
            except ApiError as error:
                if error.temporary or error.status == 422:  # 422: the test failed, someone wrote meanwhile
                    raise ApiError(409, "Conflict", f"{_label(child)} changed while being repaired") from error
                raise _rejected(child, error) from error
            outcome.repaired.append(_label(child))
        try:
            result = kube.apply(child)
        except ApiError as error:
            if error.temporary:  # the next try carries on where this one stopped
                raise ApiError(error.status, error.reason, f"{_label(child)}: {error.message}") from error
            if creating:
                _roll_back(kube, created, memory)
                outcome.applied.clear()
            raise _rejected(child, error) from error
        if creating:
            created.append(result)
        memory[child_key(child)] = (
            child["metadata"]["annotations"][HASH_ANNOTATION],
            str(result["metadata"].get("resourceVersion", "")),
        )
        view.remember(result)
        contested = bool(contests.contested([child_key(child)]))
        (outcome.restored if contested else outcome.applied).append(_label(child))


def _prune(kube: Kube, view: View, owner: Owner, children: list[Obj], outcome: Outcome, contests: Contests) -> None:
    wanted = {(kind_of(c), c["metadata"]["name"]) for c in children}
    for live in view.owned_children(f"{owner.namespace}/{owner.name}"):
        refs = live["metadata"].get("ownerReferences") or []
        if not any(ref.get("uid") == owner.uid for ref in refs):
            continue  # a namesake's leftover, for the garbage collector
        if (kind_of(live), live["metadata"]["name"]) not in wanted:
            kube.delete(kind_of(live), owner.namespace, live["metadata"]["name"], uid=live["metadata"].get("uid"))
            contests.forget(child_key(live))
            outcome.pruned.append(_label(live))


def _observe(view: View, context: RenderContext, children: list[Obj], now: str) -> Observation:
    owner = context.owner
    key = f"{owner.namespace}/{owner.name}"
    live = [obj for obj in (view.child(kind_of(c), owner.namespace, c["metadata"]["name"]) for c in children) if obj]
    nodes = view.gpu_nodes() if context.spec.resources.gpu.count > 0 else []
    moment = parse_time(now) or datetime.datetime.now(datetime.UTC)
    return Observation(children=live, pods=view.pods(key), nodes=nodes, managed=view.managed(key), now=moment)


def _kserve_bound(observation: Observation) -> float | None:
    """Seconds until a not-Ready InferenceService passes the bound after which status names the
    usual causes (nothing else would wake the RecModel then)."""
    for child in observation.children:
        if child.get("kind") == INFERENCE_SERVICE.kind:
            ready = {c.get("type"): c.get("status") for c in (child.get("status") or {}).get("conditions") or []}
            if ready.get("Ready") != "True" and (left := seconds_to_bound(child, observation.now)) is not None:
                return left + 1
    return None


def _remove_legacy_finalizer(kube: Kube, body: Obj) -> bool:
    finalizers = list(body["metadata"].get("finalizers") or [])
    if LEGACY_FINALIZER not in finalizers:
        return False
    kube.json_patch(
        RECMODEL,
        body["metadata"]["namespace"],
        body["metadata"]["name"],
        [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {
                "op": "replace",
                "path": "/metadata/finalizers",
                "value": [f for f in finalizers if f != LEGACY_FINALIZER],
            },
        ],
    )
    return True


def _rejected_before(previous: Obj, owner: Owner) -> bool:
    """Did the API server already reject a child of this very generation?"""
    for condition in previous.get("conditions") or []:
        if condition.get("type") == ConditionType.RECONCILED and condition.get("reason") == reasons.CHILD_REJECTED:
            return bool(previous.get("observedGeneration") == owner.generation)
    return False


def _still_rejected(previous: Obj, owner: Owner, now: str) -> tuple[str, str] | None:
    """The API server rejected a child of this very generation less than a minute ago: the same
    answer, without asking again. Every dry run is a write request, and the children that the
    rejection rolled back (their pods going) would otherwise each ask it once more."""
    if not _rejected_before(previous, owner):
        return None
    condition = next(c for c in previous["conditions"] if c.get("type") == ConditionType.RECONCILED)
    since, moment = parse_time(condition.get("lastTransitionTime")), parse_time(now)
    if since is None or moment is None or (moment - since).total_seconds() >= RECHECK_REJECTED_SECONDS:
        return None
    return reasons.CHILD_REJECTED, str(condition.get("message", ""))


def _contest_reported(previous: Obj, problem: tuple[str, str] | None) -> bool:
    """Does the status written already say this very contest?"""
    if problem is None or problem[0] != reasons.CONFLICTING_WRITER:
        return False
    for condition in previous.get("conditions") or []:
        if condition.get("type") == ConditionType.RECONCILED:
            return bool((condition.get("reason"), condition.get("message")) == problem)
    return False


def owner_of(body: Obj) -> Owner:
    meta = body["metadata"]
    return Owner(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=int(meta.get("generation", 1))
    )


def _deliver_canary(
    owner: Owner, spec: RecModelSpec, previous: Obj | None, settings: Settings, now: str
) -> tuple[Obj | None, analysis.Step | None]:
    """The canary's delivery state for this pass, after reading its metrics when they are due."""
    state = analysis.current(spec, previous, now)
    if spec.canary is None or state is None or settings.metrics is None or not analysis.due(state, now):
        return state, None
    window = spec.canary.analysis.step_seconds if spec.canary.analysis else analysis.SHADOW_WINDOW_SECONDS
    try:
        measured = settings.metrics.measure(analysis.queries(owner.namespace, owner.name, window))
    except MetricsUnavailable as error:
        return {**state, "evaluatedAt": now, "message": f"no decision: {error}"}, None
    step = analysis.evaluate(spec.canary, state, measured, now)
    return step.state, step


def reconcile(
    kube: Kube,
    view: View,
    body: Obj,
    settings: Settings,
    memory: MutableMapping[ChildKey, tuple[str, str]],
    now: str,
    *,
    contests: Contests,
    clock: float,
) -> Outcome:
    """`now` stamps status times; `clock` (monotonic seconds) paces the answers to a contending writer."""
    owner = owner_of(body)
    outcome = Outcome(status=None, finalizer_removed=_remove_legacy_finalizer(kube, body))
    if body["metadata"].get("deletionTimestamp"):
        return outcome  # the garbage collector removes the children
    previous = body.get("status") or {}
    context: RenderContext | None = None
    children: list[Obj] = []
    canary: Obj | None = None
    try:
        spec = parse_spec(owner.name, body.get("spec") or {})
        canary, step = _deliver_canary(owner, spec, previous.get("canary"), settings, now)
        context = RenderContext(
            owner=owner,
            spec=spec,
            server_image=settings.server_image,
            ingress_domain=settings.ingress_domain,
            canary_weight=analysis.live_weight(canary),
            mirror=analysis.mirroring(spec.canary, canary),
        )
        children = render_children(context, settings.prometheus_url)
        _check_kinds_served(view, children)
        _check_kserve_mode(view, context)
        if (rejected := _still_rejected(previous, owner, now)) is not None:
            raise SpecError(*rejected)
        try:
            careful = _rejected_before(previous, owner)
            _apply_children(kube, view, children, memory, outcome, careful=careful, contests=contests, clock=clock)
            _prune(kube, view, owner, children, outcome, contests)
        except ApiError as error:
            if error.status < 500 or error.namespace_terminating:
                raise  # a race, the server's own backoff, or no RecModel to report on: just retry
            # An admission webhook that cannot be reached, a 5xx: say so now, and retry with backoff.
            outcome.problem = (reasons.CHILD_NOT_WRITTEN, f"{error.message} (HTTP {error.status}); retrying")
            outcome.retry = error
        if step is not None:
            if step.promote:
                assert spec.canary is not None
                view.remember(kube.patch_recmodel(owner.namespace, owner.name, analysis.promotion_patch(spec.canary)))
            if step.event is not None:
                outcome.events.append(step.event)
        labels = {child_key(child): _label(child) for child in children}
        contested = contests.contested(list(labels))
        if contested and outcome.problem is None:
            outcome.problem = (reasons.CONFLICTING_WRITER, conflict_message([(labels[k], c) for k, c in contested]))
        looks = [contests.next_look(list(labels), clock)]
        if canary is not None and canary.get("decision") in (analysis.PROGRESSING, analysis.SHADOW):
            looks.append(analysis.EVALUATE_EVERY_SECONDS)
        outcome.requeue_after = min((look for look in looks if look is not None), default=None)
    except SpecError as error:
        outcome.problem = (error.reason, error.message)
    if context is None:
        assert outcome.problem is not None
        new_status = failed_status(owner.generation, *outcome.problem)
    else:
        observation = _observe(view, context, children, now)
        new_status = compute_status(context, observation, outcome.problem)
        if (bound := _kserve_bound(observation)) is not None:
            outcome.requeue_after = min(bound, outcome.requeue_after or bound)
        if canary is not None:
            new_status["canary"] = canary
        if _contest_reported(previous, outcome.problem) and previous.get("observedGeneration") == owner.generation:
            # Replica counts, phase and Ready flip with every round of the contest, and writing
            # each flip would be the very write storm the backoff avoids: status holds what it
            # said when the contest began (Reconciled names the writer) until the contest ends.
            new_status = {**previous, "conditions": previous.get("conditions") or []}
    outcome.status = new_status
    if not same_status(previous, new_status):
        stamped = stamp(new_status, previous, now)
        cleared = {key: None for key in ("url", "replicas", "canary") if key in previous and key not in stamped}
        result = kube.patch_recmodel_status(owner.namespace, owner.name, {**cleared, **stamped})
        view.remember(result)
        outcome.status = stamped
        outcome.status_written = True
    if outcome.retry is not None:
        raise outcome.retry  # the work queue retries with its backoff; the status says why meanwhile
    return outcome
