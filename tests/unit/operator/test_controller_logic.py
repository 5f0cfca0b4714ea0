"""Pure pieces of the controller: drift as server-side apply merges, quantities, the work queue,
the cache's owner index, spec rules mirrored from the CRD, and request timeouts."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from kubernetes import client

from recmodel_operator.cache import OUR_PODS, Cache, child_source, crd_essentials, crd_serves
from recmodel_operator.drift import conflicting_lists, contains, pointer
from recmodel_operator.kinds import DEPLOYMENT, INFERENCE_SERVICE, SERVICE
from recmodel_operator.kube import ApiError, Kube
from recmodel_operator.quantity import parse_quantity, same_quantity
from recmodel_operator.reconcile import SpecError, needs_apply, parse_spec
from recmodel_operator.render.context import Owner, RenderContext
from recmodel_operator.render.desired import HASH_ANNOTATION, render_children
from recmodel_operator.workqueue import WorkQueue


def test_named_lists_compare_by_name_and_ignore_entries_others_added() -> None:
    desired = {"env": [{"name": "A", "value": "1"}]}
    assert contains({"env": [{"name": "EXTRA", "value": "x"}, {"name": "A", "value": "1"}]}, desired)
    assert not contains({"env": [{"name": "A", "value": "2"}]}, desired)
    assert not contains({"env": [{"name": "EXTRA", "value": "x"}]}, desired)


def test_other_lists_must_match_exactly() -> None:
    assert not contains({"args": ["--a", "--b"]}, {"args": ["--a"]})
    assert not contains({"tolerations": [{"key": "x"}, {"key": "y"}]}, {"tolerations": [{"key": "x"}]})


def test_quantities_compare_by_value() -> None:
    assert contains({"cpu": "500m"}, {"cpu": "0.5"})
    assert not contains({"cpu": "500m"}, {"cpu": "1"})
    assert same_quantity("1Gi", "1073741824") and not same_quantity("abc", "abc1")
    assert parse_quantity("1k") == 1000 and parse_quantity("2Mi") == 2 * 2**20
    with pytest.raises(ValueError):
        parse_quantity("1.2.3")


def test_a_rekeyed_service_port_is_a_list_to_replace_whole() -> None:
    desired = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
    live = {"spec": {"ports": [{"name": "http", "port": 8081, "targetPort": 8080, "protocol": "TCP"}]}}
    assert conflicting_lists(live, desired) == [("spec", "ports")]
    assert pointer(("spec", "ports")) == "/spec/ports"
    assert conflicting_lists(desired, desired) == []
    # A container port edit inside a named container is found at the live index.
    live_pod = {"containers": [{"name": "side"}, {"name": "main", "ports": [{"name": "http", "containerPort": 9}]}]}
    want_pod = {"containers": [{"name": "main", "ports": [{"name": "http", "containerPort": 8080}]}]}
    assert conflicting_lists(live_pod, want_pod) == [("containers", 1, "ports")]


def _children(**spec: Any) -> list[dict[str, Any]]:
    raw = {"model": {"storageUri": "s3://m/v1"}, "backend": "standalone", **spec}
    context = RenderContext(owner=Owner("r", "ns", "uid-1"), spec=parse_spec("r", raw))
    return render_children(context)


def test_every_change_of_desired_state_changes_the_hash() -> None:
    gpu = _children(resources={"gpu": {"count": 1}})
    cpu = _children()
    hashes = [c["metadata"]["annotations"][HASH_ANNOTATION] for c in gpu]
    assert hashes != [c["metadata"]["annotations"][HASH_ANNOTATION] for c in cpu]
    # The GPU child still "contains" the CPU one (only a removal differs): the hash catches it.
    assert not contains(gpu[0], cpu[0])


def test_a_normalised_field_is_applied_once_not_forever() -> None:
    desired = _children()[0]
    live = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7"}}
    live["spec"] = {**desired["spec"], "strategy": {"type": "Recreate"}}  # the server kept it its way
    memory: dict[Any, Any] = {}
    assert needs_apply(desired, live, memory)
    memory[("deployments", "ns", desired["metadata"]["name"])] = (
        desired["metadata"]["annotations"][HASH_ANNOTATION],
        "7",
    )
    assert not needs_apply(desired, live, memory)
    changed_by_someone = {**live, "metadata": {**live["metadata"], "resourceVersion": "8"}}
    assert needs_apply(desired, changed_by_someone, memory)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"resources": {"cpu": "1k"}}, "spec.resources.cpu: '1k' is 1,000 cores"),
        ({"resources": {"cpu": "1Gi"}}, "binary suffix"),
        ({"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}, "minReplicas must not exceed maxReplicas"),
        ({"ranking": {"topK": 100, "maxCandidates": 10}}, "topK must not exceed maxCandidates"),
        ({"retrieval": {"candidates": 2000}}, "retrieval.candidates must not exceed ranking.maxCandidates"),
        ({"preprocessing": {"mode": "transformer"}, "backend": "standalone"}, "transformer needs backend kserve"),
        ({"runtime": "torchserve", "autoscaling": {"metric": "latency"}}, "runtime torchserve does not export"),
        (
            {"runtime": "torchserve", "backend": "standalone", "autoscaling": {"metric": "rps"}},
            "runtime torchserve does not export",
        ),
    ],
)
def test_the_spec_model_refuses_what_the_crd_refuses_and_more(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec("r", {"model": {"storageUri": "s3://m/v1"}, **raw})
    assert error.value.reason == "InvalidSpec"
    assert message in error.value.message


def test_the_queue_dedupes_never_runs_a_key_twice_at_once_and_backs_off() -> None:
    queue = WorkQueue(base_delay=0.05)
    for _ in range(3):
        queue.add("a")
    assert queue.get(timeout=0) == "a"
    assert queue.get(timeout=0) is None
    queue.add("a")  # changed while in progress: comes back after
    assert queue.get(timeout=0) is None
    queue.done("a")
    assert queue.get(timeout=0) == "a"
    queue.done("a")
    assert queue.retry("a") == pytest.approx(0.05)
    assert queue.retry("a") == pytest.approx(0.1)
    started = time.monotonic()
    assert queue.get(timeout=1) == "a"
    assert time.monotonic() - started >= 0.04
    queue.done("a")
    queue.forget("a")
    assert queue.retry("a") == pytest.approx(0.05)


def test_the_cache_indexes_children_by_owner() -> None:
    cache = Cache()
    source = child_source(DEPLOYMENT)
    child = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "r-predictor",
            "namespace": "ns",
            "managedFields": [{"manager": "x"}],
            "ownerReferences": [{"kind": "RecModel", "name": "r", "uid": "u", "controller": True}],
        },
    }
    cache.upsert(source, child)
    assert [c["metadata"]["name"] for c in cache.owned(source, "ns/r")] == ["r-predictor"]
    assert "managedFields" not in cache.get(source, "ns", "r-predictor")["metadata"]  # type: ignore[index]
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"app.kubernetes.io/instance": "r"}}}
    cache.upsert(OUR_PODS, pod)
    assert cache.owned(OUR_PODS, "ns/r") == [pod]
    changes = cache.replace(source, [])
    assert changes[0][1] is None and cache.owned(source, "ns/r") == []


def test_served_kinds_come_from_established_crds() -> None:
    crd = {
        "metadata": {"name": "inferenceservices.serving.kserve.io"},
        "spec": {
            "group": "serving.kserve.io",
            "names": {"kind": "InferenceService"},
            "versions": [{"name": "v1beta1", "served": True}],
        },
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }
    assert crd_serves([crd_essentials(crd)], INFERENCE_SERVICE)
    crd["status"] = {"conditions": []}
    assert not crd_serves([crd_essentials(crd)], INFERENCE_SERVICE)


def test_a_hung_api_connection_fails_the_call_within_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts and never answers: the request must not hold its worker."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setattr("recmodel_operator.kube.API_TIMEOUT", 1.0)
    kube = Kube(client.ApiClient(configuration))
    started = time.monotonic()
    with pytest.raises(ApiError) as error:
        kube.get(SERVICE, "ns", "x")
    assert error.value.temporary
    assert time.monotonic() - started < 5
    listener.close()


def test_a_stuck_reconcile_fails_the_health_check() -> None:
    from recmodel_operator.controller import Controller
    from recmodel_operator.reconcile import Settings

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # never contacted: the controller is not started
    controller = Controller(Kube(client.ApiClient(configuration)), Settings(), stuck_seconds=0.05)
    assert controller.health()["queue"] == 0
    controller.queue.add("ns/r")
    assert controller.queue.get(timeout=0) == "ns/r"  # a worker took it and hangs
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="a reconcile has been running"):
        controller.health()
    controller.queue.done("ns/r")
    assert controller.health()["queue"] == 0


class _View:
    """The cache as a reconcile reads it, with one live InferenceService and a set of served kinds."""

    def __init__(self, live: dict[str, Any] | None, served: set[str]) -> None:
        self.live, self.kinds = live, served

    def child(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.live if kind.kind == "InferenceService" else None

    def served(self, kind: Any) -> bool:
        return kind.builtin or kind.group in self.kinds


def test_kserve_modes_need_knative_and_never_switch() -> None:
    from recmodel_operator.reconcile import _check_kserve_mode

    def context(**spec: Any) -> RenderContext:
        raw = {"model": {"storageUri": "s3://m/v1"}, **spec}
        return RenderContext(owner=Owner("r", "ns", "uid-1"), spec=parse_spec("r", raw))

    canary = {"canary": {"storageUri": "s3://m/v2"}}
    scaled = {"autoscaling": {"minReplicas": 1, "maxReplicas": 4, "metric": "rps", "target": 50}}
    with pytest.raises(SpecError) as error:
        _check_kserve_mode(_View(None, {"serving.kserve.io"}), context(**canary))  # type: ignore[arg-type]
    assert error.value.reason == "KnativeNotInstalled"
    # rps with a fixed replica count needs no autoscaler, so Standard mode serves it.
    _check_kserve_mode(_View(None, set()), context(autoscaling={"metric": "rps"}))  # type: ignore[arg-type]
    standard = {"metadata": {"annotations": {}}, "status": {"deploymentMode": "RawDeployment"}}
    with pytest.raises(SpecError) as error:
        _check_kserve_mode(_View(standard, {"serving.knative.dev"}), context(**scaled))  # type: ignore[arg-type]
    assert error.value.reason == "DeploymentModeFixed" and "Standard" in error.value.message
    _check_kserve_mode(_View(standard, set()), context())  # type: ignore[arg-type]


def test_a_request_kopf_retries_is_logged_as_a_warning_and_one_it_gives_up_on_as_an_error() -> None:
    import logging

    from recmodel_operator.handlers import RetriedIsWarning

    def record(message: str, name: str = "kopf._cogs.clients.watching") -> logging.LogRecord:
        item = logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)
        RetriedIsWarning().filter(item)
        return item

    retried = record("Request attempt #1 failed; will retry: GET /apis/recmodel.dev -> APITooManyRequestsError(429)")
    assert (retried.levelno, retried.levelname) == (logging.WARNING, "WARNING")
    assert record("Request attempt #9 failed; escalating: GET /apis -> APIServerError(503)").levelno == logging.ERROR
    assert record("x failed; will retry: y", name="recmodel.controller").levelno == logging.ERROR
