"""A real Prometheus (built from the Go module proxy) scraping local processes, each target
with the labels its pod would carry (namespace, pod; the model servers add `model`
themselves), as the operator's PromQL selects.

The cluster's Prometheus (`devcluster up`) discovers targets from files: whoever starts a
model server or an operator beside the cluster registers it with `register_targets` and
Prometheus picks it up within a second, as pod discovery would. Tests that need a Prometheus
of their own start one on static targets with `running_prometheus`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster.build.versions import PROMETHEUS_VERSION, bin_dir
from devcluster.common.podnet import prometheus_real_relabel
from devcluster.common.ports import free_ports
from devcluster.common.stopping import stop_process

SCRAPE_INTERVAL = "1s"
BINARY = f"prometheus-{PROMETHEUS_VERSION}"


@dataclass(frozen=True)
class Target:
    address: str  # host:port of a /metrics endpoint
    labels: dict[str, str] = field(default_factory=dict)


def pod_discovery(kubeconfig: Path) -> dict[str, Any]:
    """Prometheus finds the model-server pods through the API server, as in a cluster, and scrapes
    those annotated `prometheus.io/scrape: "true"` (the operator annotates model-server pods) on
    the annotated port and path, labelled with their namespace and pod as the operator's PromQL
    selects, at the pod's IP on its real node. KWOK's pods (nothing listens) are left out."""
    real, real_address = prometheus_real_relabel()
    return {
        "job_name": "pods",
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                "regex": real,
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                "regex": real,
                "replacement": real_address,
                "target_label": "__address__",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def config(
    targets: list[Target] | None = None, targets_dir: Path | None = None, kubeconfig: Path | None = None
) -> dict[str, Any]:
    """Static targets, or every `*.json` file under `targets_dir` (Prometheus's file_sd format);
    with a `kubeconfig`, also the real nodes' pods."""
    job: dict[str, Any] = {"job_name": "local-processes"}
    if targets_dir is not None:
        job["file_sd_configs"] = [{"files": [str(targets_dir / "*.json")], "refresh_interval": "5s"}]
    else:
        job["static_configs"] = [{"targets": [t.address], "labels": t.labels} for t in targets or []]
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [job, *([pod_discovery(kubeconfig)] if kubeconfig else [])],
    }


def argv(workdir: Path, port: int) -> list[str]:
    return [
        str(bin_dir() / BINARY),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]


def write_config(workdir: Path, document: dict[str, Any]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(document))


def register_targets(targets_dir: Path, name: str, targets: list[Target]) -> Path:
    """Writes (atomically) the targets file `name`.json that the cluster's Prometheus watches."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{name}.json"
    tmp = targets_dir / f".{name}.tmp"
    tmp.write_text(json.dumps([{"targets": [t.address], "labels": t.labels} for t in targets]))
    os.replace(tmp, path)
    return path


@contextmanager
def registered_targets(targets_dir: Path, name: str, targets: list[Target]) -> Iterator[Path]:
    path = register_targets(targets_dir, name, targets)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, params: dict[str, str]) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as response:
            body = json.loads(response.read())
        if body["status"] != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a PromQL error)."""
        result: list[dict[str, Any]] = self._get("/api/v1/query", {"query": promql})["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def healthy_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self._get("/api/v1/targets", {"state": "active"})["activeTargets"]
        return [t for t in targets if t.get("health") == "up"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


@contextmanager
def running_prometheus(targets: list[Target], workdir: Path) -> Iterator[Prometheus]:
    (port,) = free_ports(1)
    write_config(workdir, config(targets))
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(argv(workdir, port), stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while not server.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{(workdir / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield server
    finally:
        stop_process(process)
        log.close()
