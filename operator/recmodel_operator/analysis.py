"""Progressive delivery of a canary, decided from measurements (pure: state and numbers in,
the next state out; reading Prometheus is `prometheus.py`'s job, writing is the reconcile's).

The state lives in the RecModel's `status.canary` (`CanaryStatus`), so a restarted or new
leader carries on where the last one stopped. A step advances when its time is up and every
threshold held over the step's window with enough traffic to judge; the canary is promoted
after the last step and rolled back to 0% as soon as one threshold fails with enough traffic
behind it. A rolled-back or promoted canary stays so until `canary.storageUri` changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recmodel_operator import reasons
from recmodel_operator.conditions import CanaryDecision
from recmodel_operator.spec import CanaryAnalysisSpec, CanarySpec, RecModelSpec
from recmodel_operator.timestamps import parse_time

Obj = dict[str, Any]

PROGRESSING, PROMOTED, ROLLED_BACK, SHADOW, MANUAL = (
    CanaryDecision.PROGRESSING,
    CanaryDecision.PROMOTED,
    CanaryDecision.ROLLED_BACK,
    CanaryDecision.SHADOW,
    CanaryDecision.MANUAL,
)
EVALUATE_EVERY_SECONDS = 5.0
RANKING_ROUTES = "predict|infer"  # the model server's route label of ranking requests
SHADOW_WINDOW_SECONDS = 60  # the window of the numbers a shadow canary shows (no decisions)


@dataclass(frozen=True)
class Measurements:
    """The canary over the step's window (None: no data)."""

    p95_ms: float | None
    error_rate: float | None
    agreement: float | None  # mean NDCG@10 against the stable model on mirrored documents
    requests: float  # requests the canary answered (live and mirrored)
    comparisons: float  # mirrored documents compared


@dataclass(frozen=True)
class Step:
    """What the reconcile does with a new state."""

    state: Obj  # the new status.canary
    event: tuple[str, str, str] | None = None  # (type, reason, message) for an Event
    promote: bool = False  # write canary.storageUri into model.storageUri and drop the canary


def queries(namespace: str, name: str, window_seconds: int) -> dict[str, str]:
    """PromQL for each measurement: the canary pods by their name, the comparisons from the
    stable pods that mirror to it."""
    model = f'namespace="{namespace}",model="{name}"'
    canary = f'{model},pod=~"{name}-predictor-canary-.*"'
    window = f"[{window_seconds}s]"
    # Every answer of the ranking routes, the refusals before the model included (503, 408, 431...).
    answers = f'{canary},route=~"{RANKING_ROUTES}"'
    return {
        "p95_ms": "1000 * histogram_quantile(0.95, sum(rate("
        f"recmodel_request_duration_seconds_bucket{{{canary}}}{window})) by (le))",
        "error_rate": f'(sum(rate(recmodel_http_responses_total{{{answers},code=~"5.."}}{window})) or vector(0))'
        f" / sum(rate(recmodel_http_responses_total{{{answers}}}{window}))",
        "agreement": f"sum(rate(recmodel_shadow_agreement_sum{{{model}}}{window}))"
        f" / sum(rate(recmodel_shadow_agreement_count{{{model}}}{window}))",
        "requests": f"sum(increase(recmodel_http_responses_total{{{answers}}}{window}))",
        "comparisons": f"sum(increase(recmodel_shadow_agreement_count{{{model}}}{window}))",
    }


def initial(canary: CanarySpec, now: str) -> Obj:
    if canary.analysis is not None:
        steps = canary.analysis.steps
        decision, step, weight = PROGRESSING, 1, 0 if canary.shadow else steps[0]
        message = f"step 1 of {len(steps)}"
    elif canary.shadow:
        decision, step, weight, message = SHADOW, 0, 0, "mirrored requests only"
    else:
        decision, step, weight = MANUAL, 0, canary.traffic_percent
        message = f"trafficPercent {canary.traffic_percent}"
    return {
        "storageUri": canary.storage_uri,
        "decision": decision,
        "step": step,
        "weight": weight,
        "stepStartedAt": now,
        "message": message,
        "metrics": [],
    }


def current(spec: RecModelSpec, previous: Obj | None, now: str) -> Obj | None:
    """The canary's state for this reconcile: carried over from status, or begun afresh when the
    canary (or how it is delivered) changed. None without a canary."""
    canary = spec.canary
    if canary is None:
        # A promotion removed the canary: its record stays until the next canary.
        return previous if previous and previous.get("decision") == PROMOTED else None
    if previous and previous.get("storageUri") == canary.storage_uri:
        decision = previous.get("decision")
        if decision in (PROMOTED, ROLLED_BACK):
            return previous
        wanted = initial(canary, now)["decision"]
        if decision == wanted:
            if decision == MANUAL:
                return {
                    **previous,
                    "weight": canary.traffic_percent,
                    "message": f"trafficPercent {canary.traffic_percent}",
                }
            return previous
    return initial(canary, now)


def due(state: Obj | None, now: str) -> bool:
    """Whether the metrics should be read again now (Progressing, or Shadow to show them)."""
    if state is None or state.get("decision") not in (PROGRESSING, SHADOW):
        return False
    last, at = parse_time(state.get("evaluatedAt")), parse_time(now)
    return last is None or at is None or (at - last).total_seconds() >= EVALUATE_EVERY_SECONDS


def _metric(name: str, value: float | None, threshold: float | None, ok: bool | None) -> Obj:
    return {"name": name, "value": None if value is None else round(value, 4), "threshold": threshold, "ok": ok}


def _judge(analysis: CanaryAnalysisSpec, m: Measurements, mirrored: bool) -> tuple[list[Obj], list[str], bool]:
    """(metrics for status, failures, enough traffic to judge)."""
    enough = m.requests >= analysis.min_requests and (not mirrored or m.comparisons >= analysis.min_requests)
    checks: list[tuple[str, float | None, float | None, bool]] = [
        ("p95Ms", m.p95_ms, analysis.max_p95_ms, True),
        ("errorRate", m.error_rate, analysis.max_error_rate, True),
        ("agreement", m.agreement, analysis.min_agreement, False),
    ]
    metrics, failures = [], []
    for name, value, threshold, is_max in checks:
        ok: bool | None = None
        if threshold is not None and value is not None:
            ok = value <= threshold if is_max else value >= threshold
            if not ok and enough:
                sign = ">" if is_max else "<"
                failures.append(f"{name} {value:.3g} {sign} {threshold:g}")
        metrics.append(_metric(name, value, threshold, ok))
    metrics.append(_metric("requests", m.requests, float(analysis.min_requests), m.requests >= analysis.min_requests))
    return metrics, failures, enough


def evaluate(canary: CanarySpec, state: Obj, m: Measurements, now: str) -> Step:
    """The next state from the measurements of the current step."""
    analysis = canary.analysis
    if state["decision"] == SHADOW or analysis is None:
        return Step({**state, "evaluatedAt": now, "metrics": _shadow_metrics(m)})
    # At 100% the stable model answers nothing live, so there is nothing to mirror or compare.
    compares = canary.mirrors and (canary.shadow or int(state["weight"]) < 100)
    metrics, failures, enough = _judge(analysis, m, mirrored=compares)
    state = {**state, "evaluatedAt": now, "metrics": metrics}
    step, steps = int(state["step"]), analysis.steps
    where = f"step {step} of {len(steps)} ({state['weight']}%)"
    if failures:
        message = f"rolled back at {where}: {', '.join(failures)}"
        rolled = {**state, "decision": ROLLED_BACK, "weight": 0, "message": message}
        return Step(rolled, ("Warning", reasons.CANARY_ROLLED_BACK, message))
    started, at = parse_time(state.get("stepStartedAt")), parse_time(now)
    elapsed = (at - started).total_seconds() if started and at else 0.0
    if elapsed < analysis.step_seconds:
        return Step({**state, "message": f"{where}: {elapsed:.0f}s of {analysis.step_seconds}s, every threshold holds"})
    if not enough:
        wanted = analysis.min_requests
        message = f"{where}: waiting for traffic ({m.requests:.0f} requests, {m.comparisons:.0f} comparisons; {wanted} needed)"
        return Step({**state, "message": message})
    if step >= len(steps):
        message = f"promoted {canary.storage_uri} after {len(steps)} steps"
        promoted = {**state, "decision": PROMOTED, "weight": 0, "message": message}
        return Step(promoted, ("Normal", reasons.CANARY_PROMOTED, message), promote=True)
    weight = 0 if canary.shadow else steps[step]
    message = f"step {step + 1} of {len(steps)} ({weight}%): step {step} held"
    advanced = {**state, "step": step + 1, "weight": weight, "stepStartedAt": now, "message": message}
    return Step(advanced, ("Normal", reasons.CANARY_STEP, message))


def _shadow_metrics(m: Measurements) -> list[Obj]:
    return [
        _metric("p95Ms", m.p95_ms, None, None),
        _metric("errorRate", m.error_rate, None, None),
        _metric("agreement", m.agreement, None, None),
        _metric("requests", m.requests, None, None),
    ]


def live_weight(state: Obj | None) -> int | None:
    """The canary's share of live traffic to render (None: no canary)."""
    if state is None or state.get("decision") == PROMOTED:
        return None
    return int(state.get("weight", 0))


def mirroring(canary: CanarySpec | None, state: Obj | None) -> bool:
    """Whether the stable model copies requests to the canary now."""
    active = state is not None and state.get("decision") in (PROGRESSING, SHADOW)
    return canary is not None and canary.mirrors and active


def promotion_patch(canary: CanarySpec) -> Obj:
    """The spec edit that promotes: the canary's model becomes the model, the canary goes."""
    return {"spec": {"model": {"storageUri": canary.storage_uri}, "canary": None}}
