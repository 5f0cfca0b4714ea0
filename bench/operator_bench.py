"""Operator benchmark on the local control plane: apply -> children, apply -> Ready, API
requests per reconcile, operator memory, and writes at rest."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from devcluster.fixtures import Tools, temporary_namespace
from devcluster.testing import OperatorProcess, install_crds, wait_for


def _recmodel(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "recmodel.dev/v1alpha1",
        "kind": "RecModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"storageUri": f"s3://models/{name}/v1"},
            "backend": "standalone",
            "resources": {"cpu": "100m", "memory": "256Mi"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
        },
    }


def _metric(text: str, name: str, match: str = "") -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name) and match in line)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_batch(tools: Tools, operator: OperatorProcess, count: int) -> dict[str, Any]:
    with temporary_namespace(tools, prefix="bench") as namespace:
        names = [f"ranker-{i:03d}" for i in range(count)]
        created: dict[str, float] = {}
        ready: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                deployments = json.loads(tools.kubectl_run("get", "deployments", "-n", namespace, "-o", "json").stdout)[
                    "items"
                ]
                now = time.monotonic()
                for d in deployments:
                    created.setdefault(d["metadata"]["name"].removesuffix("-predictor"), now)
                models = json.loads(tools.kubectl_run("get", "recmodels", "-n", namespace, "-o", "json").stdout)[
                    "items"
                ]
                for m in models:
                    if (m.get("status") or {}).get("phase") == "Ready":
                        ready.setdefault(m["metadata"]["name"], now)
                time.sleep(0.2)

        metrics_before = operator.metrics()
        watcher = threading.Thread(target=watch, daemon=True)
        applied_at = time.monotonic()
        watcher.start()
        tools.kubectl_run(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [_recmodel(n) for n in names]}),
        )
        wait_for(lambda: len(ready) == count, timeout=600, interval=1, what=f"{count} RecModels Ready")
        stop.set()
        watcher.join()
        metrics_after = operator.metrics()
        to_children = [created[n] - applied_at for n in names]
        reconciles = _metric(metrics_after, "recmodel_operator_reconciles_total") - _metric(
            metrics_before, "recmodel_operator_reconciles_total"
        )
        requests = _metric(metrics_after, "recmodel_operator_api_requests_total") - _metric(
            metrics_before, "recmodel_operator_api_requests_total"
        )
        # At rest: nothing changes, so nothing should be written.
        rest_before = operator.metrics()
        time.sleep(20)
        rest_after = operator.metrics()
        writes = sum(
            _metric(rest_after, "recmodel_operator_api_requests_total", f'verb="{v}"')
            - _metric(rest_before, "recmodel_operator_api_requests_total", f'verb="{v}"')
            for v in ("apply", "patch-status", "delete")
        )
        assert operator.process is not None
        result = {
            "recmodels": count,
            "apply_to_children_p50_s": statistics.median(to_children),
            "apply_to_children_p99_s": _percentile(to_children, 0.99),
            "apply_to_all_ready_s": max(ready.values()) - applied_at,
            "api_requests_per_reconcile": requests / max(reconciles, 1),
            "operator_rss_mb": psutil.Process(operator.process.pid).memory_info().rss / 2**20,
            "writes_per_minute_at_rest": writes * 3,
        }
        tools.kubectl_run("delete", "recmodels", "--all", "-n", namespace, "--wait=false")
        return result


def run(tools: Tools, work: Path, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    install_crds(tools)
    operator = OperatorProcess(tools, work / "operator-bench.log", resync_seconds=10)
    operator.start()
    try:
        return [run_batch(tools, operator, count) for count in counts]
    finally:
        operator.stop()
