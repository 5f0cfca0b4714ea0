"""A real Prometheus (built from the Go module proxy) scraping local processes, each target
with the labels its pod would carry (namespace, model, pod), as the operator's PromQL selects."""

from __future__ import annotations

import json
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

from devcluster.ports import free_ports
from devcluster.servers import stop_process
from devcluster.versions import PROMETHEUS_VERSION, bin_dir


@dataclass(frozen=True)
class Target:
    address: str  # host:port of a /metrics endpoint
    labels: dict[str, str] = field(default_factory=dict)


def config(targets: list[Target], scrape_interval: str = "1s") -> dict[str, Any]:
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "model-servers",
                "static_configs": [{"targets": [t.address], "labels": t.labels} for t in targets],
            }
        ],
    }


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a PromQL error)."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=10) as response:
            body = json.loads(response.read())
        if body["status"] != "success":
            raise RuntimeError(f"{promql}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


@contextmanager
def running_prometheus(targets: list[Target], workdir: Path) -> Iterator[Prometheus]:
    (port,) = free_ports(1)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config(targets)))
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(bin_dir() / f"prometheus-{PROMETHEUS_VERSION}"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"prometheus did not start:\n{(workdir / 'prometheus.log').read_text()[-2000:]}"
                    ) from None
            time.sleep(0.3)
        yield Prometheus(url)
    finally:
        stop_process(process)
        log.close()
