"""The autoscaling loop end to end with the real parts: a standalone RecModel on the real node,
loaded through the ingress controller, scaled on its p95 latency (and on requests/s) by KEDA's
operator and metrics API server reading the cluster's Prometheus, which discovers and scrapes
the model-server pods; the HPA in kube-controller-manager resizes the Deployment, the kubelet
runs the new pods as containers of the built server image and the ingress sends them their share.

The loop is driven by load only: nothing here writes replicas, HPAs or metrics. The HPA's
scale-down window is shortened through the RecModel's own field (KEDA's advanced settings),
not by changing Kubernetes' defaults."""

from __future__ import annotations

import json
from pathlib import Path

from devcluster.addons.prometheus import Prometheus
from devcluster.harness.scaling_loop import LOAD, Timeline, autoscaled, load_for, run_loop, scaled_model
from devcluster.harness.testing import OperatorProcess, model_claim
from recmodel_handlers.tools.samples import make_request

MAX_REPLICAS = 4


def _loop(
    operator: OperatorProcess, server_image: str, namespace: str, tmp_path: Path, model_dir: Path, metric: str
) -> Timeline:
    tools = operator.tools
    assert tools.prometheus_url is not None, "the session cluster runs Prometheus"
    body = tmp_path / "request.json"
    body.write_text(json.dumps({"instances": [make_request(1000)]}))
    obj = autoscaled(metric, metric, max_replicas=MAX_REPLICAS)
    with model_claim(tools, namespace, model_dir.resolve()) as claim:
        endpoint = scaled_model(tools, namespace, obj, server_image, f"pvc://{claim}")
        return run_loop(
            tools, Prometheus(tools.prometheus_url), namespace, obj, lambda: load_for(metric, endpoint, body, tmp_path)
        )


def _assert_the_loop_closed(timeline: Timeline) -> None:
    load = [s for s in timeline.samples if s.phase == LOAD]
    # The HPA read the metric through KEDA above its target, and every replica it asked for ran.
    assert any(s.hpa_value is not None and s.hpa_value > timeline.target for s in load), timeline.table()
    assert timeline.most_ready(LOAD) == MAX_REPLICAS, timeline.table()
    # The added replicas are containers that took real traffic through the ingress.
    assert timeline.most_serving(LOAD) == MAX_REPLICAS, timeline.table()
    # Idle again, the value it reads falls and the replicas come back to the minimum.
    assert timeline.last().ready == 1, timeline.table()
    assert timeline.last().desired == 1, timeline.table()


def test_latency_p95_above_target_scales_out_and_back(
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path, tmp_path: Path
) -> None:
    _assert_the_loop_closed(_loop(operator, server_image, namespace, tmp_path, trained_model, "latency"))


def test_requests_per_second_scale_out_and_back(
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path, tmp_path: Path
) -> None:
    _assert_the_loop_closed(_loop(operator, server_image, namespace, tmp_path, trained_model, "rps"))
