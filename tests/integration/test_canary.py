"""Progressive delivery with real parts: the operator steps a canary's traffic up, reading the
canary's latency, errors and ranking agreement from the cluster's Prometheus, which scrapes two
real model-server processes started with the commands the operator rendered (the stable one
mirroring requests to the canary, as rendered). The operator promotes a good canary by itself,
and rolls back a slow one and one whose rankings disagree, with the reason in status and an
Event.

The traffic split is played by the test's client, from the weight the operator publishes in
status: KWOK's pods are not processes, so no Service or ingress carries these requests yet."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devcluster.fixtures import Tools
from devcluster.prometheus import Target, registered_targets
from devcluster.servers import kserve_server, local_command
from devcluster.testing import (
    OperatorProcess,
    apply,
    get_json,
    recmodel,
    rendered_container,
    small_standalone,
    wait_for,
)
from recmodel_handlers.client import predict
from recmodel_handlers.samples import make_request

ANALYSIS = {
    "steps": [25, 50, 100],
    "stepSeconds": 10,
    "maxP95Ms": 60,
    "maxErrorRate": 0.05,
    "minAgreement": 0.8,
    "minRequests": 8,
}


def _with_canary(name: str) -> dict[str, Any]:
    obj = small_standalone(name)
    obj["spec"]["canary"] = {"storageUri": f"s3://models/{name}/v8", "mirrorPercent": 50, "analysis": ANALYSIS}
    # Both replicas queue rather than shed: these tests judge models, not load shedding.
    obj["spec"]["server"] = {"maxQueue": 64, "maxQueueMs": 200}
    return obj


@contextmanager
def canary_pair(
    tools: Tools, namespace: str, name: str, stable_dir: Path, canary_dir: Path, work: Path
) -> Iterator[tuple[str, str]]:
    """The stable and canary servers as the operator rendered them (the stable one mirroring to
    the canary), scraped by the cluster's Prometheus under their pods' labels."""
    wait_for(
        lambda: any(
            a.startswith("--shadow-url=")
            for a in rendered_container(tools, namespace, f"{name}-predictor").get("args", [])
        ),
        timeout=60,
        what="the stable Deployment rendered mirroring to the canary",
    )
    canary_argv = local_command(rendered_container(tools, namespace, f"{name}-predictor-canary"), canary_dir)
    with kserve_server(canary_dir, name, work / "canary.log", argv=canary_argv) as canary:
        stable_container = rendered_container(tools, namespace, f"{name}-predictor")
        stable_argv = local_command(stable_container, stable_dir, {"--shadow-url": canary})
        with kserve_server(stable_dir, name, work / "stable.log", argv=stable_argv) as stable:
            assert tools.prometheus_targets is not None
            targets = [
                Target(stable.removeprefix("http://"), {"namespace": namespace, "pod": f"{name}-predictor-0"}),
                Target(canary.removeprefix("http://"), {"namespace": namespace, "pod": f"{name}-predictor-canary-0"}),
            ]
            with registered_targets(tools.prometheus_targets, f"{namespace}-{name}", targets):
                yield stable, canary


class SplitLoad:
    """Ranking requests at about `rate`/s, each to the canary with the probability the
    operator's published weight gives, else to the stable server."""

    def __init__(self, tools: Tools, namespace: str, name: str, stable: str, canary: str, rate: float = 10) -> None:
        self.tools, self.namespace, self.name = tools, namespace, name
        self.urls = {"stable": stable, "canary": canary}
        self.interval = 1 / rate
        self.weight = 0
        self.weights_seen: list[int] = []
        self.answers: Counter[tuple[str, str]] = Counter()  # (track, outcome)
        self.stop = threading.Event()
        self.request = make_request(1000)
        self.rng = random.Random(0)

    def _follow_weight(self) -> None:
        while not self.stop.wait(0.5):
            status = (recmodel(self.tools, self.namespace, self.name) or {}).get("status") or {}
            weight = int((status.get("canary") or {}).get("weight") or 0)
            if not self.weights_seen or self.weights_seen[-1] != weight:
                self.weights_seen.append(weight)
            self.weight = weight

    def _send(self) -> None:
        while not self.stop.is_set():
            track = "canary" if self.rng.random() * 100 < self.weight else "stable"
            try:
                answer = predict(self.urls[track], self.name, self.request)
                outcome = "ok" if answer["predictions"][0]["items"] else "empty"
            except Exception as error:
                outcome = type(error).__name__
            self.answers[(track, outcome)] += 1
            time.sleep(self.interval)

    @contextmanager
    def running(self) -> Iterator[SplitLoad]:
        threads = [threading.Thread(target=self._follow_weight), threading.Thread(target=self._send)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()

    def failures(self) -> dict[tuple[str, str], int]:
        return {key: count for key, count in self.answers.items() if key[1] != "ok"}


def _decided(tools: Tools, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    def decided() -> dict[str, Any] | None:
        obj = recmodel(tools, namespace, name)
        canary = ((obj or {}).get("status") or {}).get("canary") or {}
        return obj if canary.get("decision") in ("Promoted", "RolledBack") else None

    try:
        result: dict[str, Any] = wait_for(decided, timeout=timeout, interval=1, what="the canary decided")
    except AssertionError as error:
        status = ((recmodel(tools, namespace, name) or {}).get("status") or {}).get("canary")
        raise AssertionError(f"{error}; status.canary: {json.dumps(status)}") from None
    return result


def _event_reasons(tools: Tools, namespace: str, name: str) -> list[str]:
    events = get_json(tools, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return [e["reason"] for e in sorted(events["items"], key=lambda e: e["metadata"]["creationTimestamp"])]


def _deliver(
    operator: OperatorProcess, namespace: str, stable_dir: Path, canary_dir: Path, work: Path
) -> tuple[dict[str, Any], SplitLoad]:
    tools = operator.tools
    name = "ranker"
    apply(tools, namespace, _with_canary(name))
    with canary_pair(tools, namespace, name, stable_dir, canary_dir, work) as (stable, canary):
        load = SplitLoad(tools, namespace, name, stable, canary)
        with load.running():
            final = _decided(tools, namespace, name, timeout=180)
    print(json.dumps(final["status"]["canary"], indent=1), load.weights_seen, dict(load.answers))
    return final, load


def test_a_good_canary_is_promoted_through_every_step(
    operator: OperatorProcess, namespace: str, trained_model: Path, tmp_path: Path
) -> None:
    final, load = _deliver(operator, namespace, trained_model, trained_model, tmp_path)
    canary = final["status"]["canary"]
    assert canary["decision"] == "Promoted", canary
    assert [w for w in load.weights_seen if w] == [25, 50, 100], load.weights_seen
    # The promotion is the operator's own edit: the canary's model is now the model.
    assert final["spec"]["model"]["storageUri"] == "s3://models/ranker/v8"
    assert "canary" not in final["spec"]
    assert load.failures() == {}
    reasons = _event_reasons(operator.tools, namespace, "ranker")
    assert reasons.count("CanaryStep") == 2 and "CanaryPromoted" in reasons, reasons
    columns = operator.tools.kubectl_run("get", "recm", "ranker", "-n", namespace).stdout
    assert "CANARY" in columns.splitlines()[0], columns


def _assert_rolled_back(operator: OperatorProcess, namespace: str, final: dict[str, Any], failed: str) -> None:
    canary = final["status"]["canary"]
    assert canary["decision"] == "RolledBack" and canary["weight"] == 0, canary
    assert failed in canary["message"], canary["message"]
    assert final["spec"]["model"]["storageUri"] == "s3://models/ranker/v1"  # the stable model stays
    wait_for(
        lambda: (
            get_json(operator.tools, "deployment", "ranker-predictor-canary", "-n", namespace)["spec"]["replicas"] == 0
        ),
        timeout=30,
        what="the canary scaled to 0",
    )
    reasons = _event_reasons(operator.tools, namespace, "ranker")
    assert "CanaryRolledBack" in reasons and "CanaryPromoted" not in reasons, reasons


def test_a_slow_canary_is_rolled_back_on_its_p95(
    operator: OperatorProcess, namespace: str, trained_model: Path, heavy_model: Path, tmp_path: Path
) -> None:
    final, _ = _deliver(operator, namespace, trained_model, heavy_model, tmp_path)
    _assert_rolled_back(operator, namespace, final, "p95Ms")


def test_a_canary_whose_ranking_disagrees_is_rolled_back(
    operator: OperatorProcess, namespace: str, trained_model: Path, noise_model: Path, tmp_path: Path
) -> None:
    final, _ = _deliver(operator, namespace, trained_model, noise_model, tmp_path)
    _assert_rolled_back(operator, namespace, final, "agreement")


def test_a_shadow_canary_gets_copies_only_and_its_numbers_show_in_status(
    operator: OperatorProcess, namespace: str, trained_model: Path, tmp_path: Path
) -> None:
    tools = operator.tools
    obj = _with_canary("ranker")
    obj["spec"]["canary"] = {"storageUri": "s3://models/ranker/v8", "shadow": True, "mirrorPercent": 100}
    apply(tools, namespace, obj)
    with canary_pair(tools, namespace, "ranker", trained_model, trained_model, tmp_path) as (stable, canary):
        load = SplitLoad(tools, namespace, "ranker", stable, canary)
        with load.running():

            def measured() -> dict[str, Any] | None:
                status = ((recmodel(tools, namespace, "ranker") or {}).get("status") or {}).get("canary") or {}
                values = {m["name"]: m.get("value") for m in status.get("metrics", [])}
                return status if (values.get("agreement") or 0) > 0 and (values.get("requests") or 0) > 10 else None

            status = wait_for(measured, timeout=90, interval=1, what="the shadow canary's numbers in status")
    assert (status["decision"], status["weight"]) == ("Shadow", 0), status
    values = {m["name"]: m["value"] for m in status["metrics"]}
    assert values["agreement"] == 1.0, values  # the same model: every mirrored ranking matches
    assert load.answers[("canary", "ok")] == 0 and load.failures() == {}  # no live request went there
