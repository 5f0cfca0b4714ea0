"""Progressive delivery on the real request path: the stable and canary Deployments run on the
real node (the kubelet runs their pods as containers of the built server image, both models on
one claim), the ingress controller splits live traffic over the Service's endpoints (a weight is
canary replicas), the stable pods mirror copies to the canary's Service by its DNS name (CoreDNS,
kube-proxy), and the cluster's Prometheus discovers and scrapes every pod. The operator
promotes a good canary by itself, and rolls back a slow one and one whose rankings disagree,
with the reason in status and an Event. Nothing here starts a server or picks where a request
goes: the test applies RecModels and sends requests to the ingress."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from devcluster.harness.fixtures import Tools
from devcluster.harness.servers import scraped
from devcluster.harness.testing import (
    PULL_TIMEOUT,
    OperatorProcess,
    apply,
    get_json,
    in_background,
    model_claim,
    model_versions,
    on_real_nodes,
    pod_url,
    ready_pods,
    recmodel,
    small_standalone,
    wait_for,
)
from recmodel_handlers.tools.samples import make_request

ANALYSIS = {
    "steps": [25, 50, 100],
    "stepSeconds": 10,
    "maxP95Ms": 60,
    "maxErrorRate": 0.05,
    "minAgreement": 0.8,
    "minRequests": 8,
}


def host(namespace: str) -> str:
    return f"ranker.{namespace}.shop.example"


STABLE, CANARY = "v1", "v8"  # the models' folders on the claim


@contextmanager
def models(tools: Tools, namespace: str, workdir: Path, stable_dir: Path, canary_dir: Path) -> Iterator[str]:
    """The stable and canary packages on one claim the pods mount; yields its name."""
    root = model_versions(workdir / "models", {STABLE: stable_dir, CANARY: canary_dir})
    with model_claim(tools, namespace, root.resolve()) as claim:
        yield claim


def _with_canary(server_image: str, namespace: str, claim: str, **canary: Any) -> dict[str, Any]:
    """One stable replica of the claim's stable model on the real node, with its canary model
    as the canary."""
    obj = on_real_nodes(small_standalone("ranker"), server_image, f"pvc://{claim}/{STABLE}", host(namespace))
    obj["spec"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
    # The replicas queue rather than shed: these tests judge models, not load shedding.
    obj["spec"]["server"] = {"maxQueue": 64, "maxQueueMs": 200}
    canary_uri = f"pvc://{claim}/{CANARY}"
    obj["spec"]["canary"] = {"storageUri": canary_uri, "mirrorPercent": 50, "analysis": ANALYSIS, **canary}
    return obj


class IngressLoad:
    """Ranking requests at about `rate`/s through the ingress controller; each answer is
    counted by outcome and by the model version that answered (which track, when they differ)."""

    def __init__(self, tools: Tools, namespace: str, name: str, rate: float = 10) -> None:
        assert tools.ingress_url is not None
        self.tools, self.namespace, self.name = tools, namespace, name
        self.url = f"{tools.ingress_url}/v1/models/{name}:predict"
        self.interval = 1 / rate
        self.weights_seen: list[int] = []
        self.answers: Counter[str] = Counter()  # "ok <version>" or the failure
        self.stop = threading.Event()
        self.body = orjson.dumps({"instances": [make_request(1000)]})

    def _follow_weight(self) -> None:
        while not self.stop.wait(0.5):
            status = (recmodel(self.tools, self.namespace, self.name) or {}).get("status") or {}
            weight = int((status.get("canary") or {}).get("weight") or 0)
            if not self.weights_seen or self.weights_seen[-1] != weight:
                self.weights_seen.append(weight)

    def _send(self) -> None:
        headers = {"host": host(self.namespace), "content-type": "application/json"}
        with httpx.Client(timeout=30, headers=headers) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(self.url, content=self.body)
                    if response.status_code == 200:
                        outcome = f"ok {response.json()['predictions'][0]['version']}"
                    else:
                        outcome = f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                self.answers[outcome] += 1
                time.sleep(self.interval)

    @contextmanager
    def running(self) -> Iterator[IngressLoad]:
        with in_background(self.stop, self._follow_weight, self._send):
            yield self

    def failures(self) -> dict[str, int]:
        return {outcome: count for outcome, count in self.answers.items() if not outcome.startswith("ok ")}


def _serving(tools: Tools, namespace: str) -> None:
    """Both tracks Ready and the route answering."""
    wait_for(
        lambda: len(ready_pods(tools, namespace, "app.kubernetes.io/instance=ranker")) >= 2,
        timeout=PULL_TIMEOUT,
        what="the stable and canary pods Ready",
    )
    assert tools.ingress_url is not None
    wait_for(
        lambda: httpx.get(f"{tools.ingress_url}/v2/health/ready", headers={"host": host(namespace)}).status_code == 200,
        timeout=30,
        what="the route through the ingress",
    )


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
    operator: OperatorProcess, server_image: str, namespace: str, workdir: Path, stable_dir: Path, canary_dir: Path
) -> tuple[dict[str, Any], IngressLoad]:
    tools = operator.tools
    with models(tools, namespace, workdir, stable_dir, canary_dir) as claim:
        apply(tools, namespace, _with_canary(server_image, namespace, claim))
        _serving(tools, namespace)
        load = IngressLoad(tools, namespace, "ranker")
        with load.running():
            final = _decided(tools, namespace, "ranker", timeout=180)
            time.sleep(2)  # a promotion rolls the stable Deployment: keep sending through it
    print(json.dumps(final["status"]["canary"], indent=1), load.weights_seen, dict(load.answers))
    return final, load


def test_a_good_canary_is_promoted_through_every_step(
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path, tmp_path: Path
) -> None:
    final, load = _deliver(operator, server_image, namespace, tmp_path, trained_model, trained_model)
    canary = final["status"]["canary"]
    assert canary["decision"] == "Promoted", canary
    assert [w for w in load.weights_seen if w] == [25, 50, 100], load.weights_seen
    # The promotion is the operator's own edit: the canary's model is now the model.
    assert final["spec"]["model"]["storageUri"] == final_uri(final, CANARY)
    assert "canary" not in final["spec"]
    assert load.failures() == {}  # through every step and the promotion's rollout
    reasons = _event_reasons(operator.tools, namespace, "ranker")
    assert reasons.count("CanaryStep") == 2 and "CanaryPromoted" in reasons, reasons
    columns = operator.tools.kubectl_run("get", "recm", "ranker", "-n", namespace).stdout
    assert "CANARY" in columns.splitlines()[0], columns


def final_uri(final: dict[str, Any], version: str) -> str:
    """The storage URI of `version` on the claim the RecModel's models came from."""
    claim = str(final["spec"]["model"]["storageUri"]).removeprefix("pvc://").split("/", 1)[0]
    return f"pvc://{claim}/{version}"


def _assert_rolled_back(operator: OperatorProcess, namespace: str, final: dict[str, Any], failed: str) -> None:
    canary = final["status"]["canary"]
    assert canary["decision"] == "RolledBack" and canary["weight"] == 0, canary
    assert failed in canary["message"], canary["message"]
    assert final["spec"]["model"]["storageUri"] == final_uri(final, STABLE)  # the stable model stays
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
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path, heavy_model: Path, tmp_path: Path
) -> None:
    final, _ = _deliver(operator, server_image, namespace, tmp_path, trained_model, heavy_model)
    _assert_rolled_back(operator, namespace, final, "p95Ms")


def test_a_canary_whose_ranking_disagrees_is_rolled_back(
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path, noise_model: Path, tmp_path: Path
) -> None:
    final, load = _deliver(operator, server_image, namespace, tmp_path, trained_model, noise_model)
    _assert_rolled_back(operator, namespace, final, "agreement")
    assert load.answers["ok v8-noise"] > 0, load.answers  # the ingress gave the canary live requests


def _shadow_numbers(tools: Tools, namespace: str, load: IngressLoad) -> dict[str, Any]:
    """status.canary once the shadow's agreement and request count are in, under live load."""

    def measured() -> dict[str, Any] | None:
        status = ((recmodel(tools, namespace, "ranker") or {}).get("status") or {}).get("canary") or {}
        values = {m["name"]: m.get("value") for m in status.get("metrics", [])}
        return status if values.get("agreement") is not None and (values.get("requests") or 0) > 10 else None

    with load.running():
        result: dict[str, Any] = wait_for(
            measured, timeout=90, interval=1, what="the shadow canary's numbers in status"
        )
    return result


def test_a_shadow_canary_gets_copies_only_and_its_numbers_show_in_status(
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path, noise_model: Path, tmp_path: Path
) -> None:
    tools = operator.tools
    with models(tools, namespace, tmp_path, trained_model, noise_model) as claim:
        obj = _with_canary(server_image, namespace, claim, shadow=True, mirrorPercent=100)
        obj["spec"]["canary"].pop("analysis")
        apply(tools, namespace, obj)
        _serving(tools, namespace)
        load = IngressLoad(tools, namespace, "ranker")
        status = _shadow_numbers(tools, namespace, load)
        (stable,) = ready_pods(tools, namespace, "app.kubernetes.io/instance=ranker,recmodel.dev/track=stable")
        mirrored = scraped(pod_url(stable), "recmodel_shadow_requests_total")
    print(json.dumps(status, indent=1), dict(load.answers))
    assert (status["decision"], status["weight"]) == ("Shadow", 0), status
    values = {m["name"]: m["value"] for m in status["metrics"]}
    assert values["agreement"] < 0.5, values  # trained on shuffled labels: the copies' rankings disagree
    # No live request reached the canary: every answer came from the stable model...
    assert set(load.answers) == {"ok v7"}, load.answers
    # ...while the stable pod mirrored copies to it through the canary's Service.
    assert mirrored > 10, mirrored
