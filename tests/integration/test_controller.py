"""The operator as a controller, against the real API server, controller-manager, scheduler and
KWOK: every change of desired state reaches the children (removals too), drift and foreign edits
are repaired from watches without loops, bad quantities get a status, and API traffic (counted
by the API server under the operator's own FlowSchemas) stays near zero at rest."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import (
    GPU_TOLERATION,
    OperatorProcess,
    apply,
    condition,
    get_json,
    operator_api_requests,
    recmodel,
    sample,
    wait_for,
    wait_phase,
    wait_until_quiet,
)

pytestmark = pytest.mark.cluster


def _standalone(name: str, **spec: Any) -> dict[str, Any]:
    obj = sample("04-standalone-hpa.yaml")
    obj["metadata"]["name"] = name
    obj["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1, "metric": "cpu", "target": 70}
    obj["spec"].update(spec)
    return obj


def _pod_spec(tools: Tools, namespace: str, deployment: str) -> dict[str, Any]:
    live = get_json(tools, "deployment", deployment, "-n", namespace)
    return dict(live["spec"]["template"]["spec"]) if live else {}


def _container(tools: Tools, namespace: str, deployment: str) -> dict[str, Any]:
    containers = _pod_spec(tools, namespace, deployment).get("containers") or [{}]
    return dict(containers[0])


# -- bug 1: removals reach the children -----------------------------------------------------------


def test_gpu_to_cpu_removes_the_gpu_limit_selector_and_toleration(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = _standalone(
        "shrink",
        resources={"cpu": "1", "memory": "2Gi", "gpu": {"count": 1, "product": "NVIDIA-T4"}},
        placement={"nodeSelector": {"shop.example.com/pool": "ranking"}},
    )
    apply(tools, namespace, obj)
    wait_for(
        lambda: (
            _container(tools, namespace, "shrink-predictor")
            .get("resources", {})
            .get("limits", {})
            .get("nvidia.com/gpu")
            == "1"
        ),
        what="GPU limit",
    )
    edited = copy.deepcopy(obj)
    edited["spec"]["resources"]["gpu"] = {"count": 0}
    edited["spec"]["placement"] = {}
    apply(tools, namespace, edited)
    wait_for(
        lambda: "nvidia.com/gpu" not in _container(tools, namespace, "shrink-predictor")["resources"]["limits"],
        what="GPU limit removed",
    )
    pod_spec = _pod_spec(tools, namespace, "shrink-predictor")
    assert "nodeSelector" not in pod_spec, pod_spec.get("nodeSelector")
    assert GPU_TOLERATION not in (pod_spec.get("tolerations") or [])
    wait_phase(tools, namespace, "shrink", "Ready")
    # Events name the children acted on.
    applied = [
        e["message"]
        for e in get_json(tools, "events", "-n", namespace, "--field-selector", "involvedObject.name=shrink")["items"]
        if e["reason"] == "Applied"
    ]
    assert "applied Deployment/shrink-predictor, Service/shrink, Ingress/shrink" in applied, applied
    assert "applied Deployment/shrink-predictor" in applied, applied
    pods = get_json(tools, "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=shrink")["items"]
    assert pods and all(
        p["spec"]["nodeName"].startswith("cpu-node") for p in pods if p["status"].get("phase") == "Running"
    )


@pytest.mark.parametrize(
    ("before", "after", "check"),
    [
        (
            {"placement": {"nodeSelector": {"kubernetes.io/os": "linux", "type": "kwok"}}},
            {"placement": {"nodeSelector": {"kubernetes.io/os": "linux"}}},
            lambda pod, container, children: pod.get("nodeSelector") == {"kubernetes.io/os": "linux"},
        ),
        (
            {"image": "registry.example.com/recmodel-server:custom"},
            {"image": ""},
            lambda pod, container, children: container["image"] == "ghcr.io/recmodel/recmodel-server:0.1.0",
        ),
        (
            {
                "placement": {
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 50,
                                    "podAffinityTerm": {
                                        "topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "edit"}},
                                    },
                                }
                            ]
                        }
                    }
                }
            },
            {"placement": {}},
            lambda pod, container, children: "affinity" not in pod,
        ),
        (
            {"ingress": {"enabled": True, "className": "traefik"}},
            {"ingress": {"enabled": True}},
            lambda pod, container, children: "ingressClassName" not in children["ingress/edit"]["spec"],
        ),
        (
            {"ingress": {"enabled": True}},
            {"ingress": {"enabled": False}},
            lambda pod, container, children: children["ingress/edit"] is None,
        ),
        (
            {"canary": {"storageUri": "s3://models/edit/v8", "trafficPercent": 20}},
            {"canary": None},
            lambda pod, container, children: children["deployment/edit-predictor-canary"] is None,
        ),
    ],
    ids=["node-selector-key", "image", "affinity", "ingress-class", "ingress-off", "canary-off"],
)
def test_every_kind_of_removal_reaches_the_children(
    operator: OperatorProcess, namespace: str, before: dict[str, Any], after: dict[str, Any], check: Any
) -> None:
    tools = operator.tools
    obj = _standalone("edit", **before)
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "edit", "Ready")
    edited = copy.deepcopy(obj)
    edited["spec"].update(after)
    edited["spec"] = {k: v for k, v in edited["spec"].items() if v is not None}
    tools.kubectl_run("replace", "-n", namespace, "-f", "-", stdin=json.dumps(edited))

    def removed() -> bool:
        children = {
            c: get_json(tools, c, "-n", namespace) for c in ("ingress/edit", "deployment/edit-predictor-canary")
        }
        return bool(
            check(
                _pod_spec(tools, namespace, "edit-predictor"), _container(tools, namespace, "edit-predictor"), children
            )
        )

    wait_for(removed, timeout=30, what="the removal reached the child")
    rm = wait_phase(tools, namespace, "edit", "Ready")
    assert condition(rm, "Reconciled")["status"] == "True"  # type: ignore[index]


# -- bugs 3 and 8: unusable quantities get a status and an Event ------------------------------------


@pytest.mark.parametrize("cpu", ["1k", "2M", "1Gi"])
def test_unusable_cpu_quantities_are_reported_not_crashed_on(
    operator: OperatorProcess, namespace: str, cpu: str
) -> None:
    tools = operator.tools
    obj = _standalone("bad-cpu", resources={"cpu": cpu, "memory": "2Gi"})
    apply(tools, namespace, obj)  # the CRD's pattern accepts it: only the operator can say why not
    failed = wait_phase(tools, namespace, "bad-cpu", "Failed", timeout=30)
    ready = condition(failed, "Ready")
    assert ready is not None and ready["reason"] == "InvalidSpec"
    assert "spec.resources.cpu" in ready["message"] and cpu in ready["message"], ready["message"]
    assert get_json(tools, "deployments", "-n", namespace)["items"] == [], "nothing created half-way"
    events = wait_for(
        lambda: [
            e
            for e in get_json(tools, "events", "-n", namespace, "--field-selector", "involvedObject.name=bad-cpu")[
                "items"
            ]
            if e["reason"] == "InvalidSpec"
        ],
        what="an InvalidSpec Event",
    )
    assert events[0]["type"] == "Warning" and "spec.resources.cpu" in events[0]["message"]
    assert "Traceback" not in operator.log() and " ERROR " not in operator.log()


# -- drift: repaired from watches, within 2 s --------------------------------------------------------


def _time_to(predicate: Any, timeout: float = 10) -> float:
    started = time.monotonic()
    wait_for(predicate, timeout=timeout, interval=0.05, what="repair")
    return time.monotonic() - started


def test_drift_is_put_back_within_two_seconds(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = _standalone("drift", autoscaling={"minReplicas": 2, "maxReplicas": 2, "metric": "cpu", "target": 70})
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "drift", "Ready")
    timings = {}
    tools.kubectl_run("delete", "service", "drift", "-n", namespace, "--wait=false")
    timings["service deleted"] = _time_to(lambda: get_json(tools, "service/drift", "-n", namespace) is not None)
    tools.kubectl_run("scale", "deployment", "drift-predictor", "-n", namespace, "--replicas=5")
    timings["scaled by hand"] = _time_to(
        lambda: get_json(tools, "deployment/drift-predictor", "-n", namespace)["spec"]["replicas"] == 2
    )
    patch = '[{"op": "replace", "path": "/spec/template/spec/containers/0/args/4", "value": "--role=predictor"}]'
    tools.kubectl_run("patch", "deployment", "drift-predictor", "-n", namespace, "--type=json", "-p", patch)
    timings["args edited"] = _time_to(lambda: "--role=all" in _container(tools, namespace, "drift-predictor")["args"])
    print(timings)
    assert all(seconds < 2 for seconds in timings.values()), timings


def test_foreign_edits_end_stable_without_an_apply_loop(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = _standalone("foreign", ingress={"enabled": True})
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "foreign", "Ready")
    # Another writer re-keys the Service's port (80 -> 8081, still named http).
    patch = '[{"op": "replace", "path": "/spec/ports/0/port", "value": 8081}]'
    tools.kubectl_run("patch", "service", "foreign", "-n", namespace, "--type=json", "-p", patch)
    wait_for(
        lambda: [p["port"] for p in get_json(tools, "service/foreign", "-n", namespace)["spec"]["ports"]] == [80],
        what="Service port repaired",
    )
    # Fields we do not own are left alone: an env var, a label, an annotation.
    tools.kubectl_run("set", "env", "deployment/foreign-predictor", "-n", namespace, "EXTRA_FLAG=1")
    tools.kubectl_run("label", "service", "foreign", "-n", namespace, "team=search")
    tools.kubectl_run("annotate", "ingress", "foreign", "-n", namespace, "note=owned-by-someone-else")
    wait_until_quiet(tools)
    time.sleep(3)
    before = operator_api_requests(tools)
    time.sleep(60)
    after = operator_api_requests(tools)
    assert after["writes"] - before["writes"] == 0, "the operator kept writing after the foreign writer stopped"
    env = {e["name"] for e in _container(tools, namespace, "foreign-predictor").get("env", [])}
    assert "EXTRA_FLAG" in env
    assert get_json(tools, "service/foreign", "-n", namespace)["metadata"]["labels"]["team"] == "search"
    rm = wait_phase(tools, namespace, "foreign", "Ready")
    assert condition(rm, "Reconciled")["status"] == "True"  # type: ignore[index]
    assert "Traceback" not in operator.log()


def test_a_writer_that_keeps_taking_our_field_is_named_and_answered_with_backoff(
    operator: OperatorProcess, namespace: str
) -> None:
    tools = operator.tools
    obj = _standalone("contest", autoscaling={"minReplicas": 2, "maxReplicas": 2, "metric": "cpu", "target": 70})
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "contest", "Ready")
    wait_until_quiet(tools)
    theirs = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "contest-predictor", "namespace": namespace},
        "spec": {"replicas": 3},
    }
    before = operator_api_requests(tools)
    writer_applies = 0
    end = time.monotonic() + 60
    while time.monotonic() < end:  # another client takes spec.replicas, forcing, once a second
        tools.kubectl_run(
            "apply", "--server-side", "--force-conflicts", "--field-manager=intruder", "-f", "-",
            stdin=json.dumps(theirs),
        )  # fmt: skip
        writer_applies += 1
        time.sleep(1)
    during = operator_api_requests(tools)
    writes = during["writes"] - before["writes"]
    print(f"operator writes while another client applied spec.replicas {writer_applies} times in 60 s: {writes:.0f}")
    assert writes <= 10, f"{writes:.0f} operator writes against a writer that changed the field {writer_applies} times"
    contested = recmodel(tools, namespace, "contest")
    reconciled = condition(contested, "Reconciled")
    assert reconciled is not None and reconciled["status"] == "False", reconciled
    assert reconciled["reason"] == "ConflictingWriter"
    assert (
        '"intruder" (spec.replicas)' in reconciled["message"]
        and "Deployment/contest-predictor" in reconciled["message"]
    )
    events = get_json(tools, "events", "-n", namespace, "--field-selector=reason=ConflictingWriter")["items"]
    assert [e["involvedObject"]["name"] for e in events] == ["contest"], events
    assert events[0]["type"] == "Warning" and "intruder" in events[0]["message"]
    # The writer has stopped: the spec's value comes back, and so does a clean status.
    wait_for(
        lambda: get_json(tools, "deployment/contest-predictor", "-n", namespace)["spec"]["replicas"] == 2,
        timeout=320,
        what="the spec's replicas restored",
    )
    back = wait_phase(tools, namespace, "contest", "Ready", timeout=60)
    assert condition(back, "Reconciled")["status"] == "True"  # type: ignore[index]
    assert "Traceback" not in operator.log()


# -- a rejected update keeps serving the previous version ------------------------------------------


def test_a_rejected_update_keeps_the_running_version_and_says_so(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    obj = _standalone("keeps")
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "keeps", "Ready")
    edited = copy.deepcopy(obj)
    edited["spec"]["placement"] = {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": "all"}}}
    }
    apply(tools, namespace, edited)
    degraded = wait_phase(tools, namespace, "keeps", "Degraded")
    assert condition(degraded, "Ready")["status"] == "True"  # type: ignore[index]
    reconciled = condition(degraded, "Reconciled")
    assert reconciled is not None and reconciled["status"] == "False" and reconciled["reason"] == "ChildRejected"
    assert "Deployment/keeps-predictor" in reconciled["message"]
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "keeps", "Ready")


# -- at rest ----------------------------------------------------------------------------------------


def test_at_rest_the_operator_sends_almost_nothing(operator: OperatorProcess, namespace: str) -> None:
    tools = operator.tools
    count = 20
    items = [_standalone(f"rest-{i:02d}") for i in range(count)]
    apply(tools, namespace, {"apiVersion": "v1", "kind": "List", "items": items})
    for i in range(count):
        wait_phase(tools, namespace, f"rest-{i:02d}", "Ready", timeout=120)
    wait_until_quiet(tools)
    time.sleep(5)
    before = operator_api_requests(tools)
    time.sleep(60)
    after = operator_api_requests(tools)
    spent = {k: after[k] - before[k] for k in after}
    print(f"operator requests at rest over 60 s with {count} RecModels (API server's count): {spent}")
    assert spent["writes"] == 0
    # At most one request per RecModel per 5 minutes besides the watches (which run for 5 minutes).
    assert spent["total"] <= max(2, count / 5), spent
    assert recmodel(tools, namespace, "rest-00")


def test_a_first_creation_rejected_halfway_is_rolled_back_and_not_retried(
    operator: OperatorProcess, namespace: str
) -> None:
    """Creations go ahead without dry-runs; when a later child is refused, the earlier ones go."""
    tools = operator.tools
    obj = _standalone("half", ingress={"enabled": True, "host": "Not_A_Valid_Host"})
    apply(tools, namespace, obj)
    failed = wait_phase(tools, namespace, "half", "Failed", timeout=30)
    ready = condition(failed, "Ready")
    assert ready is not None and ready["reason"] == "ChildRejected" and "Ingress/half" in ready["message"]
    for kind in ("deployments", "services", "ingresses"):
        wait_for(lambda k=kind: get_json(tools, k, "-n", namespace)["items"] == [], timeout=10, what=f"no {kind}")
    wait_until_quiet(tools)
    before = operator_api_requests(tools)
    time.sleep(10)
    assert operator_api_requests(tools)["writes"] == before["writes"], "a rejected spec must not be retried in a loop"
    obj["spec"]["ingress"] = {"enabled": True}
    apply(tools, namespace, obj)
    wait_phase(tools, namespace, "half", "Ready")
