"""Pure pieces of the operator: drift detection and status, each with behaviour that could break."""

from __future__ import annotations

from recmodel_operator.drift import contains
from recmodel_operator.render.context import Owner, RenderContext
from recmodel_operator.spec import RecModelSpec
from recmodel_operator.status import Observation, compute_status, same_status, stamp


def test_drift_detection_ignores_server_defaults_but_not_changes() -> None:
    desired = {"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "args": ["x"]}]}}}
    live = {
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"containers": [{"name": "a", "args": ["x"], "imagePullPolicy": "Always"}]},
        }
    }
    assert contains(live, desired)
    live["spec"]["template"]["containers"][0]["args"] = ["y"]
    assert not contains(live, desired)
    assert not contains(None, desired)


def _context(**spec: object) -> RenderContext:
    return RenderContext(
        owner=Owner("r", "ns", "uid", generation=4),
        spec=RecModelSpec.model_validate({"model": {"storageUri": "s3://m"}, **spec}),
    )


def test_status_reports_the_schedulers_reason_and_phase() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "r-predictor"},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 0},
    }
    pod = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu.",
                }
            ]
        }
    }
    status = compute_status(
        _context(backend="standalone", autoscaling={"minReplicas": 2, "maxReplicas": 2}),
        Observation(children=[deployment], pods=[pod]),
    )
    schedulable = next(c for c in status["conditions"] if c["type"] == "Schedulable")
    assert status["phase"] == "Pending" and schedulable["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in schedulable["message"]
    deployment["status"]["readyReplicas"] = 2
    ready = compute_status(
        _context(backend="standalone", autoscaling={"minReplicas": 2, "maxReplicas": 2}),
        Observation(children=[deployment]),
    )
    assert (
        ready["phase"] == "Ready"
        and ready["replicas"] == {"desired": 2, "ready": 2}
        and ready["observedGeneration"] == 4
    )


def test_gpu_capacity_check_names_the_missing_product() -> None:
    node = {
        "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-T4"}},
        "status": {"allocatable": {"nvidia.com/gpu": "1"}},
    }
    status = compute_status(
        _context(resources={"gpu": {"count": 1, "product": "NVIDIA-H100"}}), Observation(nodes=[node])
    )
    schedulable = next(c for c in status["conditions"] if c["type"] == "Schedulable")
    assert schedulable["reason"] == "NoMatchingNodes" and "NVIDIA-H100" in schedulable["message"]


def test_transition_times_are_kept_while_status_holds() -> None:
    first = stamp({"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}, None, "t1")
    again = stamp({"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}, first, "t2")
    assert again["conditions"][0]["lastTransitionTime"] == "t1"
    assert same_status(first, {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]})
    changed = stamp({"phase": "Degraded", "conditions": [{"type": "Ready", "status": "False"}]}, first, "t3")
    assert changed["conditions"][0]["lastTransitionTime"] == "t3"


def test_a_temporary_problem_is_progressing_never_failed() -> None:
    transient = compute_status(_context(), Observation(), ("ChildNotWritten", "webhook down; retrying"))
    assert transient["phase"] == "Progressing"
    assert {c["type"]: c["reason"] for c in transient["conditions"]}["Reconciled"] == "ChildNotWritten"
    assert compute_status(_context(), Observation(), ("InvalidSpec", "bad"))["phase"] == "Failed"


def _isvc(conditions: list[dict[str, str]], **status: object) -> dict[str, object]:
    return {
        "kind": "InferenceService",
        "metadata": {"name": "r", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "status": {"conditions": conditions, **status},
    }


def test_a_not_ready_inference_service_names_kserves_missing_condition_then_the_usual_causes() -> None:
    import datetime

    context = _context(backend="kserve")
    created = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC)
    predictor = {"type": "PredictorReady", "status": "False", "reason": "MinimumReplicasUnavailable"}
    isvc = _isvc([predictor, {"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-01T10:00:00Z"}])
    early = compute_status(context, Observation(children=[isvc], now=created + datetime.timedelta(seconds=30)))
    ready = next(c for c in early["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InferenceServiceNotReady" and early["phase"] == "Progressing"
    assert "KServe's PredictorReady is False (MinimumReplicasUnavailable)" in ready["message"]
    assert "KServe has not set IngressReady" in ready["message"]
    assert "usual causes" not in ready["message"]
    late = compute_status(context, Observation(children=[isvc], now=created + datetime.timedelta(seconds=600)))
    late_message = next(c for c in late["conditions"] if c["type"] == "Ready")["message"]
    assert "not Ready for over 180s" in late_message and "KServe controller is not running" in late_message
    assert same_status(
        late, compute_status(context, Observation(children=[isvc], now=created + datetime.timedelta(days=1)))
    )


def test_kserves_failure_info_and_the_kubelets_waiting_reason_are_quoted() -> None:
    context = _context(backend="kserve")
    failure = {"reason": "NoSupportingRuntime", "message": "No runtime found to support specified framework/version"}
    isvc = _isvc(
        [{"type": "Ready", "status": "False"}],
        modelStatus={"transitionStatus": "InvalidSpec", "lastFailureInfo": failure},
    )
    status = compute_status(context, Observation(children=[isvc]))
    message = next(c for c in status["conditions"] if c["type"] == "Ready")["message"]
    assert message.startswith("KServe reports NoSupportingRuntime: No runtime found")
    assert "ClusterServingRuntime" in message
    pod = {
        "metadata": {"name": "r-predictor-abc"},
        "status": {
            "containerStatuses": [
                {
                    "name": "kserve-container",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
                }
            ]
        },
    }
    waiting = compute_status(context, Observation(children=[_isvc([])], pods=[pod]))
    message = next(c for c in waiting["conditions"] if c["type"] == "Ready")["message"]
    assert "pod r-predictor-abc: container kserve-container is ImagePullBackOff: no such image" in message
