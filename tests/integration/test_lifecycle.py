"""The operator's own lifecycle on the local control plane: RecModels delete without it, it
picks up where it left off after a SIGKILL, converges bulk applies on a cluster without KServe
or KEDA, notices CRDs installed later, and hands over between two replicas."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.common.processes import Layout
from devcluster.controlplane.cluster import stall
from devcluster.harness.fixtures import Tools, temporary_namespace
from devcluster.harness.testing import (
    OperatorProcess,
    apply,
    condition,
    get_json,
    install_crds,
    namespace_report,
    operator_identity,
    recmodel,
    sample,
    small_standalone,
    wait_for,
    wait_phase,
)

pytestmark = pytest.mark.cluster


def _apply_all(tools: Tools, namespace: str, names: list[str]) -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [small_standalone(n) for n in names]}
    apply(tools, namespace, listing)


def _ready_count(tools: Tools, namespace: str) -> int:
    items = get_json(tools, "recmodels", "-n", namespace)["items"]
    return sum(1 for m in items if (m.get("status") or {}).get("phase") == "Ready")


def _error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]


@pytest.fixture()
def new_operator(crds: Tools, operator_kubeconfig: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[OperatorProcess] = []

    def make(**options: Any) -> OperatorProcess:
        process = OperatorProcess(crds, tmp_path / f"operator-{len(started)}.log", operator_kubeconfig, **options)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()
        print(f"--- {process.log_path.name}\n{process.log()[-3000:]}")


def test_deleting_recmodels_and_their_namespace_never_waits_for_the_operator(
    crds: Tools, new_operator: Any, namespace: str
) -> None:
    tools = crds
    operator = new_operator()
    operator.start()
    names = [f"gone-{i:02d}" for i in range(20)]
    _apply_all(tools, namespace, names)
    # Ready needs each ReplicaSet's pod. Kubernetes 1.36's ReplicaSet controller waits to read
    # its own writes (StaleControllerConsistencyReplicaSet, KEP-5647) and retries a stale read
    # with the workqueue's exponential backoff; on a loaded 2-core CI machine one RecModel in 20
    # once took longer than 120 s.
    wait_for(
        lambda: _ready_count(tools, namespace) == 20,
        timeout=300,
        what="20 Ready",
        explain=lambda: namespace_report(tools, namespace),
    )
    assert all(not (recmodel(tools, namespace, n) or {})["metadata"].get("finalizers") for n in names)
    operator.stop()

    started = time.monotonic()
    tools.kubectl_run("delete", "recmodel", "gone-00", "-n", namespace, "--wait=true", "--timeout=10s")
    assert time.monotonic() - started < 10
    wait_for(lambda: get_json(tools, "deployment/gone-00-predictor", "-n", namespace) is None, timeout=10, what="GC")

    started = time.monotonic()
    tools.kubectl_run("delete", "namespace", namespace, "--wait=true", "--timeout=30s")
    elapsed = time.monotonic() - started
    print(f"namespace with 19 RecModels deleted in {elapsed:.1f}s with the operator stopped")
    # The namespace controller's own pace (pods, then the `kubernetes` finalizer); nothing of ours waits.
    assert elapsed < 30


def test_a_finalizer_left_by_an_older_operator_is_removed(crds: Tools, new_operator: Any, namespace: str) -> None:
    tools = crds
    obj = small_standalone("legacy")
    obj["metadata"]["finalizers"] = ["recmodel.dev/finalizer"]
    apply(tools, namespace, obj)
    operator = new_operator()
    operator.start()
    wait_for(
        lambda: not (recmodel(tools, namespace, "legacy") or {})["metadata"].get("finalizers"),
        timeout=20,
        what="legacy finalizer removed",
    )
    wait_phase(tools, namespace, "legacy", "Ready")
    operator.stop()
    tools.kubectl_run("delete", "recmodel", "legacy", "-n", namespace, "--wait=true", "--timeout=10s")


def _children_consistent(tools: Tools, namespace: str, names: list[str]) -> None:
    """One Deployment and one Service per RecModel, each owned by a RecModel that exists."""
    uids = {m["metadata"]["name"]: m["metadata"]["uid"] for m in get_json(tools, "recmodels", "-n", namespace)["items"]}
    assert sorted(uids) == sorted(names)
    for kind, suffix in (("deployments", "-predictor"), ("services", "")):
        items = get_json(tools, kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=recmodel-operator")["items"]
        owners = [i["metadata"]["ownerReferences"][0] for i in items]
        assert sorted(i["metadata"]["name"] for i in items) == sorted(n + suffix for n in names), kind
        assert all(ref["uid"] == uids[ref["name"]] for ref in owners), f"orphaned {kind}"


def test_bulk_applies_converge_without_kserve_or_keda_even_when_the_operator_is_killed(
    bare: Tools, tmp_path: Path
) -> None:
    """On a cluster with neither KServe nor KEDA (a second control plane), as the chart's identity."""
    tools = bare
    kubeconfig = operator_identity(tools, tmp_path / "bare-kubeconfig")
    operator = OperatorProcess(tools, tmp_path / "bare-operator.log", kubeconfig)
    try:
        with temporary_namespace(tools, prefix="bulk") as calm, temporary_namespace(tools, prefix="kill") as killed:
            operator.start()
            names = [f"bulk-{i:03d}" for i in range(100)]
            started = time.monotonic()
            _apply_all(tools, calm, names)
            wait_for(lambda: _ready_count(tools, calm) == 100, timeout=300, interval=1, what="100 Ready")
            print(f"100 RecModels Ready in {time.monotonic() - started:.1f}s")
            _children_consistent(tools, calm, names)

            started = time.monotonic()
            _apply_all(tools, killed, names)
            time.sleep(3)
            operator.kill()
            operator.start()
            wait_for(lambda: _ready_count(tools, killed) == 100, timeout=300, interval=1, what="100 Ready after kill")
            print(f"100 RecModels Ready in {time.monotonic() - started:.1f}s with a SIGKILL 3 s in")
            _children_consistent(tools, killed, names)

            # backend kserve without KServe: a reason with the fix, not an exception per reconcile.
            kserve = sample("01-cpu-kserve.yaml")
            apply(tools, calm, kserve)
            failed = wait_phase(tools, calm, kserve["metadata"]["name"], "Failed")
            ready = condition(failed, "Ready")
            assert ready is not None and ready["reason"] == "KServeNotInstalled"
            assert "backend: standalone" in ready["message"]
            latency = small_standalone("latency")
            latency["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3, "metric": "latency", "target": 20}
            apply(tools, calm, latency)
            assert condition(wait_phase(tools, calm, "latency", "Failed"), "Ready")["reason"] == "KEDANotInstalled"  # type: ignore[index]
            assert _error_lines(operator.log()) == []
            # KEDA's CRD arrives later: the operator notices through its CRD watch.
            install_crds(tools)
            wait_for(
                lambda: get_json(tools, "scaledobject", "latency-predictor", "-n", calm),
                timeout=30,
                what="ScaledObject once KEDA's CRD exists",
            )
    finally:
        operator.stop()
        print(operator.log()[-3000:])


def test_two_replicas_one_leads_and_the_other_takes_over(crds: Tools, new_operator: Any, namespace: str) -> None:
    tools = crds
    first, second = new_operator(leader_election=True), new_operator(leader_election=True)
    first.start()
    second.start()

    def holder() -> str:
        lease = get_json(tools, "lease", "recmodel-operator", "-n", "recmodel-test")
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    # Who leads is what the Lease in the API server says, not what the operators report.
    leader = wait_for(
        lambda: next((p for p in (first, second) if p.identity == holder()), None), timeout=30, what="one leader"
    )
    standby = second if leader is first else first
    apply(tools, namespace, small_standalone("ha-1"))
    wait_phase(tools, namespace, "ha-1", "Ready")

    leader.kill()  # no clean step-down: the standby waits out the lease
    killed_at = time.monotonic()
    apply(tools, namespace, small_standalone("ha-2"))
    wait_phase(tools, namespace, "ha-2", "Ready", timeout=60)
    print(f"standby reconciled {time.monotonic() - killed_at:.1f}s after the leader was killed")
    assert time.monotonic() - killed_at < 30
    assert holder() == standby.identity

    leader.start()  # back as the standby; a clean stop of the leader hands over at once
    standby.stop()
    stopped_at = time.monotonic()
    apply(tools, namespace, small_standalone("ha-3"))
    wait_phase(tools, namespace, "ha-3", "Ready", timeout=60)
    print(f"handed over {time.monotonic() - stopped_at:.1f}s after a clean stop")
    assert time.monotonic() - stopped_at < 15
    assert holder() == leader.identity
    for process in (first, second):
        assert _error_lines(process.log()) == [], process.log()[-2000:]


def test_a_restarted_leader_resumes_at_once_under_its_pod_name(crds: Tools, new_operator: Any, namespace: str) -> None:
    """Its identity is its pod's name (POD_NAME, from the downward API in the chart), which a
    restarted container keeps: it finds the lease in its own name and leads again at once,
    instead of waiting out its own old lease as a process-id identity had to (13.8 s)."""
    tools = crds

    def lease() -> dict[str, Any]:
        return ((get_json(tools, "lease", "recmodel-operator", "-n", "recmodel-test") or {}).get("spec")) or {}

    def leads(process: OperatorProcess) -> bool:
        return "recmodel_operator_leader 1.0" in process.metrics()

    operator = new_operator(leader_election=True, env={"POD_NAME": "recmodel-operator-5d8f9-x2k4q"})
    operator.start()
    wait_for(lambda: leads(operator), timeout=60, what="the first process leads")
    assert lease().get("holderIdentity") == "recmodel-operator-5d8f9-x2k4q"
    transitions = lease().get("leaseTransitions")

    operator.kill()  # SIGKILL: the lease is not released
    operator.start()  # the same pod's new container; returns once its caches are synced
    synced_at = time.monotonic()
    wait_for(lambda: leads(operator), timeout=30, interval=0.1, what="the restarted process leads")
    print(f"leading {time.monotonic() - synced_at:.2f} s after its caches synced")
    assert time.monotonic() - synced_at < 2
    assert lease().get("holderIdentity") == "recmodel-operator-5d8f9-x2k4q"
    assert lease().get("leaseTransitions") == transitions  # the same holder: no transition
    apply(tools, namespace, small_standalone("restarted-1"))
    wait_phase(tools, namespace, "restarted-1", "Ready", timeout=60)


def test_a_child_that_cannot_be_written_is_reported_at_once_and_retried(
    crds: Tools, new_operator: Any, namespace: str
) -> None:
    """An admission webhook nobody answers (as when KServe's webhook is down) makes the API server
    answer every Deployment write in the namespace with a 500: each RecModel says so in its
    status within one reconcile, and all become Ready once the webhook is gone."""
    tools = crds
    webhook = f"unreachable-{namespace}"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": webhook},
        "webhooks": [
            {
                "name": "unreachable.recmodel.dev",
                "clientConfig": {"url": "https://127.0.0.1:1/validate"},  # nothing listens on port 1
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }
    operator = new_operator(leader_election=False)
    operator.start()
    tools.kubectl_run("apply", "-f", "-", stdin=json.dumps(configuration))
    try:
        names = [f"unwritable-{i}" for i in range(5)]
        applied_at = time.monotonic()
        for name in names:
            apply(tools, namespace, small_standalone(name))

        def reported(name: str) -> dict[str, Any] | None:
            reconciled = condition(recmodel(tools, namespace, name), "Reconciled")
            return reconciled if reconciled and reconciled.get("reason") == "ChildNotWritten" else None

        for name in names:
            found = wait_for(lambda n=name: reported(n), timeout=10, what=f"{name} reports the refused write")
            assert found["status"] == "False"
            assert "failed calling webhook" in found["message"] and "Deployment/" in found["message"], found
            assert (recmodel(tools, namespace, name) or {})["status"]["phase"] == "Progressing"  # never Failed
        print(f"5 RecModels reported the refused writes {time.monotonic() - applied_at:.1f} s after the apply")
    finally:
        tools.kubectl_run("delete", "validatingwebhookconfiguration", webhook, "--ignore-not-found")
    for name in names:
        wait_phase(tools, namespace, name, "Ready", timeout=90)
    assert _error_lines(operator.log()) == [], operator.log()[-2000:]


def _all_ready(items: list[dict[str, Any]]) -> bool:
    return bool(items) and all(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (i.get("status") or {}).get("conditions") or []
        )
        for i in items
    )


def test_the_cluster_and_the_operator_recover_from_a_40_s_api_server_stall(bare: Tools, tmp_path: Path) -> None:
    """The API server frozen (SIGSTOP) for 40 s, its connections left open: the node controller
    then finds late heartbeats and marks nodes and pods NotReady; KWOK's nodes and pods come back
    as a kubelet's would, the operator's watches carry on, and every RecModel is Ready again."""
    tools = bare
    kubeconfig = operator_identity(tools, tmp_path / "stall-kubeconfig")
    operator = OperatorProcess(tools, tmp_path / "stall-operator.log", kubeconfig)
    try:
        with temporary_namespace(tools, prefix="stall") as namespace:
            operator.start()
            names = [f"stall-{i}" for i in range(5)]
            _apply_all(tools, namespace, names)
            wait_for(lambda: _ready_count(tools, namespace) == 5, timeout=120, interval=1, what="5 Ready")
            stall("kube-apiserver", 40, Layout(tools.kubeconfig.parent))
            stalled_at = time.monotonic()
            time.sleep(20)  # the node controller's grace period runs out on heartbeats the stall held back
            marked = [
                e["involvedObject"]["name"]
                for e in get_json(tools, "events", "-A", "--field-selector=reason=NodeNotReady")["items"]
            ]
            print(f"marked NotReady by the node controller after the stall: {sorted(set(marked))}")
            wait_for(lambda: _all_ready(get_json(tools, "nodes")["items"]), timeout=120, interval=1, what="nodes Ready")
            wait_for(
                lambda: _all_ready(get_json(tools, "pods", "-n", namespace)["items"]),
                timeout=120,
                interval=1,
                what="pods Ready",
            )
            wait_for(lambda: _ready_count(tools, namespace) == 5, timeout=120, interval=1, what="RecModels Ready")
            print(f"nodes, pods and RecModels Ready {time.monotonic() - stalled_at:.0f}s after the API server resumed")
            assert operator.healthy()
            assert _error_lines(operator.log()) == [], operator.log()[-2000:]
    finally:
        operator.stop()
