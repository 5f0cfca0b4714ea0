"""Progressive delivery decisions (pure): steps advance on time with every threshold held and
enough traffic, roll back at once on a failure with traffic behind it, promote after the last."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from recmodel_operator import analysis
from recmodel_operator.analysis import Measurements
from recmodel_operator.render.context import Owner, RenderContext
from recmodel_operator.render.desired import render_children
from recmodel_operator.spec import RecModelSpec

T0 = "2026-11-29T06:00:00Z"


def at(seconds: int) -> str:
    return f"2026-11-29T06:{seconds // 60:02d}:{seconds % 60:02d}Z"


def spec(**canary: Any) -> RecModelSpec:
    return RecModelSpec.model_validate(
        {
            "model": {"storageUri": "s3://m/v7"},
            "backend": "standalone",
            "canary": {
                "storageUri": "s3://m/v8",
                "analysis": {
                    "steps": [10, 50, 100],
                    "stepSeconds": 10,
                    "maxP95Ms": 100,
                    "maxErrorRate": 0.05,
                    "minAgreement": 0.9,
                    "minRequests": 5,
                },
                **canary,
            },
        }
    )


GOOD = Measurements(p95_ms=20, error_rate=0.0, agreement=0.97, requests=30, comparisons=12)


def test_a_step_holds_until_its_time_is_up_then_advances() -> None:
    s = spec()
    assert s.canary is not None
    state = analysis.current(s, None, T0)
    assert state is not None and (state["decision"], state["step"], state["weight"]) == ("Progressing", 1, 10)
    held = analysis.evaluate(s.canary, state, GOOD, at(5))
    assert (held.state["step"], held.event, held.promote) == (1, None, False)
    advanced = analysis.evaluate(s.canary, held.state, GOOD, at(11))
    assert (advanced.state["step"], advanced.state["weight"], advanced.state["stepStartedAt"]) == (2, 50, at(11))
    assert advanced.event is not None and advanced.event[1] == "CanaryStep"
    assert {m["name"]: m["ok"] for m in advanced.state["metrics"]} == {
        "p95Ms": True,
        "errorRate": True,
        "agreement": True,
        "requests": True,
    }


def test_the_last_step_promotes() -> None:
    s = spec()
    assert s.canary is not None
    state = {**analysis.initial(s.canary, T0), "step": 3, "weight": 100}
    done = analysis.evaluate(s.canary, state, GOOD, at(10))
    assert done.promote and done.state["decision"] == "Promoted"
    assert done.event is not None and done.event[:2] == ("Normal", "CanaryPromoted")
    assert analysis.promotion_patch(s.canary) == {"spec": {"model": {"storageUri": "s3://m/v8"}, "canary": None}}
    # After the promotion edit removed the canary, its record stays; nothing is rendered for it.
    promoted = RecModelSpec.model_validate({"model": {"storageUri": "s3://m/v8"}, "backend": "standalone"})
    assert analysis.current(promoted, done.state, at(12)) == done.state
    assert analysis.live_weight(done.state) is None


@pytest.mark.parametrize(
    ("measured", "failure"),
    [
        (Measurements(p95_ms=350, error_rate=0.0, agreement=0.97, requests=30, comparisons=12), "p95Ms 350 > 100"),
        (Measurements(p95_ms=20, error_rate=0.2, agreement=0.97, requests=30, comparisons=12), "errorRate 0.2 > 0.05"),
        (Measurements(p95_ms=20, error_rate=0.0, agreement=0.41, requests=30, comparisons=12), "agreement 0.41 < 0.9"),
    ],
)
def test_one_failing_threshold_rolls_back_at_once(measured: Measurements, failure: str) -> None:
    s = spec()
    assert s.canary is not None
    rolled = analysis.evaluate(s.canary, analysis.initial(s.canary, T0), measured, at(2))
    assert rolled.state["decision"] == "RolledBack" and rolled.state["weight"] == 0
    assert failure in rolled.state["message"]
    assert rolled.event is not None and rolled.event[:2] == ("Warning", "CanaryRolledBack")
    # It stays rolled back (weight 0, no mirroring) until the canary changes.
    assert analysis.current(s, rolled.state, at(30)) == rolled.state
    assert not analysis.mirroring(s.canary, rolled.state)
    again = analysis.current(spec(storageUri="s3://m/v9"), rolled.state, at(40))
    assert again is not None and (again["decision"], again["step"]) == ("Progressing", 1)


def test_no_judgement_without_enough_traffic() -> None:
    s = spec()
    assert s.canary is not None
    thin = Measurements(p95_ms=350, error_rate=0.5, agreement=0.1, requests=3, comparisons=1)
    state = analysis.initial(s.canary, T0)
    held = analysis.evaluate(s.canary, state, thin, at(2))
    assert held.state["decision"] == "Progressing"  # a bad number on 3 requests is no evidence
    waiting = analysis.evaluate(s.canary, state, thin, at(20))
    assert waiting.state["step"] == 1 and "waiting for traffic" in waiting.state["message"]


def test_shadow_mirrors_everything_and_sends_no_live_traffic() -> None:
    s = spec(shadow=True, mirrorPercent=100)
    assert s.canary is not None
    state = analysis.current(s, None, T0)
    assert state is not None and state["weight"] == 0 and analysis.mirroring(s.canary, state)
    context = RenderContext(
        owner=Owner("ranker", "shop", "uid"), spec=s, canary_weight=analysis.live_weight(state), mirror=True
    )
    children = {f"{c['kind']}/{c['metadata']['name']}": c for c in render_children(context)}
    stable = children["Deployment/ranker-predictor"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--shadow-url=http://ranker-canary.shop.svc:8080" in stable and "--shadow-percent=100" in stable
    assert children["Deployment/ranker-predictor-canary"]["spec"]["replicas"] == 1
    assert children["Service/ranker-canary"]["spec"]["selector"]["recmodel.dev/track"] == "canary"


def test_weights_become_canary_replicas_and_zero_removes_them() -> None:
    s = spec()
    owner = Owner("ranker", "shop", "uid")

    def replicas(weight: int) -> int:
        children = render_children(RenderContext(owner=owner, spec=s, canary_weight=weight))
        canary = next(c for c in children if c["metadata"]["name"] == "ranker-predictor-canary")
        return int(canary["spec"]["replicas"])

    assert [replicas(w) for w in (0, 10, 50, 100)] == [0, 1, 1, 1]


def test_queries_select_the_canary_pods_over_the_step_window() -> None:
    queries = analysis.queries("shop", "ranker", 30)
    assert 'pod=~"ranker-predictor-canary-.*"' in queries["p95_ms"] and "[30s]" in queries["p95_ms"]
    assert "recmodel_shadow_agreement_sum" in queries["agreement"]
    assert "or vector(0)" in queries["error_rate"]  # no 5xx series yet means a rate of 0


def test_invalid_deliveries_are_refused() -> None:
    with pytest.raises(ValidationError, match="steps must increase"):
        spec(analysis={"steps": [50, 10]})
    with pytest.raises(ValidationError, match="need backend standalone"):
        RecModelSpec.model_validate(
            {"model": {"storageUri": "s3://m/v7"}, "canary": {"storageUri": "s3://m/v8", "shadow": True}}
        )
