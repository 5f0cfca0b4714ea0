"""Operator benchmark on the local control plane: apply -> children, apply -> all Ready, API
requests per RecModel and at rest (counted by the API server under the operator's own
FlowSchemas, discovery included), operator memory and CPU.

Progress is followed with `kubectl get --watch` (one stream per kind), not by polling, so the
benchmark itself does not load the API server it measures."""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from devcluster.harness.fixtures import Tools, temporary_namespace
from devcluster.harness.testing import (
    OperatorProcess,
    get_json,
    install_crds,
    operator_api_requests,
    operator_identity,
    small_standalone,
    wait_for,
    wait_until_quiet,
)

REST_SECONDS = 60
APPLIERS = 4


def _apply_list(tools: Tools, namespace: str, names: list[str]) -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": [small_standalone(n) for n in names]}
    tools.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(listing))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Follow:
    """`kubectl get KIND --watch`: the first time each name is seen (with a value, if given)."""

    def __init__(self, tools: Tools, namespace: str, kind: str, columns: str, wanted: str | None = None) -> None:
        self.seen: dict[str, float] = {}
        self._process = subprocess.Popen(
            [
                str(tools.kubectl),
                f"--kubeconfig={tools.kubeconfig}",
                "get",
                kind,
                "-n",
                namespace,
                "--watch",
                "--no-headers",
                f"-o=custom-columns={columns}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._wanted = wanted
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            parts = line.split()
            if not parts or (self._wanted is not None and self._wanted not in parts[1:]):
                continue
            self.seen.setdefault(parts[0], time.monotonic())

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_batch(tools: Tools, operator: OperatorProcess, count: int) -> dict[str, Any]:
    assert operator.process is not None
    process = psutil.Process(operator.process.pid)
    wait_until_quiet(tools)
    with temporary_namespace(tools, prefix="bench") as namespace:
        names = [f"ranker-{i:04d}" for i in range(count)]
        children = _Follow(tools, namespace, "deployments", "NAME:.metadata.name")
        created = _Follow(tools, namespace, "recmodels", "NAME:.metadata.name")
        ready = _Follow(tools, namespace, "recmodels", "NAME:.metadata.name,PHASE:.status.phase", wanted="Ready")
        time.sleep(1)
        requests_before = operator_api_requests(tools)
        applied_at = time.monotonic()
        # kubectl creates a List's objects one at a time (about 12 per second here): four kubectl
        # processes at once, as a CI job or several teams would, so that creation is not the limit.
        slices = [part for i in range(APPLIERS) if (part := names[i::APPLIERS])]
        with ThreadPoolExecutor(APPLIERS) as pool:
            list(pool.map(lambda part: _apply_list(tools, namespace, part), slices))
        applied = time.monotonic() - applied_at
        wait_for(lambda: len(ready.seen) >= count, timeout=900, interval=1, what=f"{count} RecModels Ready")
        all_ready = max(ready.seen.values()) - applied_at
        time.sleep(3)
        requests_after = operator_api_requests(tools)
        for follower in (children, created, ready):
            follower.stop()
        # From the moment the API server has each RecModel to the moment its Deployment exists.
        to_children = [children.seen[f"{n}-predictor"] - created.seen[n] for n in names]
        # At rest: nothing changes, so the operator should send (almost) nothing at all.
        cpu_before = _cpu_seconds(process)
        rest_before = operator_api_requests(tools)
        time.sleep(REST_SECONDS)
        rest_after = operator_api_requests(tools)
        cpu_rest = (_cpu_seconds(process) - cpu_before) / REST_SECONDS
        spent = requests_after["total"] - requests_before["total"]
        result = {
            "recmodels": count,
            "apply_to_children_p50_s": statistics.median(to_children),
            "apply_to_children_p99_s": _percentile(to_children, 0.99),
            "kubectl_apply_s": applied,
            "apply_to_all_ready_s": all_ready,
            "api_requests_per_recmodel": spent / count,
            "api_writes_per_recmodel": (requests_after["writes"] - requests_before["writes"]) / count,
            "operator_rss_mb": process.memory_info().rss / 2**20,
            "rest_requests_per_recmodel_per_minute": (rest_after["total"] - rest_before["total"])
            * (60 / REST_SECONDS)
            / count,
            "rest_writes_per_minute": (rest_after["writes"] - rest_before["writes"]) * (60 / REST_SECONDS),
            "rest_cpu_percent_of_a_core": 100 * cpu_rest,
        }
        print(json.dumps(result), flush=True)
        tools.kubectl_run("delete", "recmodels", "--all", "-n", namespace, "--wait=false")
        return result


def run(tools: Tools, work: Path, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    install_crds(tools)
    kubeconfig = operator_identity(tools, work / "operator-kubeconfig")
    operator = OperatorProcess(tools, work / "operator-bench.log", kubeconfig)
    operator.start()
    try:
        return [run_batch(tools, operator, count) for count in counts]
    finally:
        operator.stop()


def run_killed(work: Path, count: int = 1000, kill_after_s: float = 5.0) -> dict[str, Any]:
    """`count` RecModels on a cluster with neither KServe nor KEDA, the operator SIGKILLed while
    they are being created and started again: do all converge, with no child lost or doubled?"""
    from devcluster.harness.fixtures import bare_cluster

    with bare_cluster(work / "bare-cluster") as tools:
        install_crds(tools, third_party=False)
        kubeconfig = operator_identity(tools, work / "bare-kubeconfig")
        operator = OperatorProcess(tools, work / "operator-killed.log", kubeconfig)
        operator.start()
        try:
            with temporary_namespace(tools, prefix="killed") as namespace:
                names = [f"ranker-{i:04d}" for i in range(count)]
                ready = _Follow(
                    tools, namespace, "recmodels", "NAME:.metadata.name,PHASE:.status.phase", wanted="Ready"
                )
                started = time.monotonic()
                slices = [part for i in range(APPLIERS) if (part := names[i::APPLIERS])]
                with ThreadPoolExecutor(APPLIERS + 1) as pool:
                    applies = pool.map(lambda part: _apply_list(tools, namespace, part), slices)
                    time.sleep(kill_after_s)
                    operator.kill()
                    operator.start()
                    list(applies)
                wait_for(lambda: len(ready.seen) >= count, timeout=900, interval=1, what=f"{count} Ready after a kill")
                ready.stop()
                deployments = get_json(tools, "deployments", "-n", namespace)["items"]
                owners = {d["metadata"]["ownerReferences"][0]["name"] for d in deployments}
                log = operator.log()
                result = {
                    "recmodels": count,
                    "killed_after_s": kill_after_s,
                    "all_ready_s": max(ready.seen.values()) - started,
                    "deployments": len(deployments),
                    "deployments_without_their_recmodel": len(owners - set(names)),
                    "error_lines": sum(1 for line in log.splitlines() if " ERROR " in line or "Traceback" in line),
                }
                print(json.dumps(result), flush=True)
                return result
        finally:
            operator.stop()
