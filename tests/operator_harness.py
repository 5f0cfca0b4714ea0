"""Runs the real operator as a process against the local control plane, for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devcluster.fixtures import Tools
from devcluster.ports import free_ports

REPO = Path(__file__).resolve().parent.parent
SHARED_CRDS = REPO.parent / "shared" / "crds"
THIRD_PARTY_CRDS = [
    "kserve/serving.kserve.io_inferenceservices.yaml",
    "kserve/serving.kserve.io_servingruntimes.yaml",
    "kserve/serving.kserve.io_clusterservingruntimes.yaml",
    "keda/keda.sh_scaledobjects.yaml",
    "keda/keda.sh_triggerauthentications.yaml",
    "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
    "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
    "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
]


def install_crds(tools: Tools, *, third_party: bool = True) -> None:
    paths = [REPO / "manifests" / "01-crd.yaml"]
    if third_party:
        paths += [SHARED_CRDS / p for p in THIRD_PARTY_CRDS]
    for path in paths:
        tools.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(path))
    # A CRD created a moment ago may have no status yet, which `kubectl wait` reports as an error.
    wait_for(
        lambda: (
            tools.kubectl_run(
                "wait", "--for=condition=Established", "--timeout=30s", "crd", "--all", check=False
            ).returncode
            == 0
        ),
        timeout=90,
        what="CRDs established",
    )


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


class OperatorProcess:
    def __init__(self, tools: Tools, log_path: Path, kubeconfig: Path | None = None, resync_seconds: float = 1) -> None:
        self.tools = tools
        self.resync_seconds = resync_seconds
        self.log_path = log_path
        self.kubeconfig = kubeconfig or tools.kubeconfig
        self.metrics_port, self.health_port = free_ports(2)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "RECMODEL_RESYNC_SECONDS": str(self.resync_seconds),
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "recmodel-operator"),
                "--metrics-host=127.0.0.1",
                f"--metrics-port={self.metrics_port}",
                f"--health-endpoint=http://127.0.0.1:{self.health_port}/healthz",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self.healthy, timeout=60, what="operator health endpoint")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_operator(tools: Tools, log_path: Path, kubeconfig: Path | None = None) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(tools, log_path, kubeconfig)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def get_json(tools: Tools, *args: str) -> Any:
    result = tools.kubectl_run("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def set_inference_service_ready(tools: Tools, namespace: str, name: str) -> None:
    """What KServe's controller writes once the predictor is up (it does not run here)."""
    status = {
        "status": {
            "url": f"http://{name}.{namespace}.example.com",
            "conditions": [
                {"type": "PredictorReady", "status": "True", "lastTransitionTime": "2026-11-28T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-28T00:00:00Z"},
            ],
        }
    }
    patch = json.dumps(status)
    tools.kubectl_run(
        "patch", "inferenceservice", name, "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )
