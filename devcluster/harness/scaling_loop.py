"""The autoscaling loop, run for real and recorded: load through the ingress controller on a
RecModel whose pods the real node's kubelet runs as containers of the built server image,
Prometheus discovering and scraping those pods, KEDA reading Prometheus, the HPA
(kube-controller-manager) resizing the Deployment, the kubelet starting the new pods and the
ingress sending them traffic; then the load stops and the replicas come back down.

What is sampled is what each real part reports: the ScaledObject's own query answered by
Prometheus, the value the HPA last read through `external.metrics.k8s.io` (written by the
controller-manager into the HPA's status), the replicas it wants, the Deployment's ready
replicas (written by the ReplicaSet controller once the kubelet reports the pods Ready from
their readiness probes), and how many pods answered requests lately (their own metrics).
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devcluster.addons.prometheus import Prometheus
from devcluster.build.versions import VEGETA_VERSION, bin_dir
from devcluster.common.stopping import stop_process
from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import (
    PULL_TIMEOUT,
    apply,
    condition,
    get_json,
    on_real_nodes,
    small_standalone,
    wait_for,
)
from recmodel_handlers.tools.samples import make_request

LOAD, IDLE = "load", "idle"

# Loads that overshoot each target whatever the replicas: they all share this machine's two
# cores, so added replicas spread the load but add no capacity, and the metric stays high until
# the load stops.
# - latency: LATENCY_WORKERS clients sending back to back keep that many requests queued in the
#   servers, whatever their speed; with a queue deep enough to hold them (LATENCY_SERVER), the p95
#   is several times its unloaded value (about 10 ms here for 1,000 candidates).
# - rps: a fixed rate, well within one replica's capacity, of TARGET x most replicas.
LATENCY_TARGET_MS, LATENCY_WORKERS = 40, 16
LATENCY_SERVER = {"maxQueue": 64, "maxQueueMs": 200}
RPS_TARGET, RPS_LOAD_RATE = 5, 20


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the loop started
    phase: str  # load or idle
    query_value: float | None  # the ScaledObject's query, answered by Prometheus now
    hpa_value: float | None  # what the HPA last read from KEDA's metrics API
    desired: int | None  # the HPA's desired replicas (None until it has a status)
    ready: int  # the Deployment's ready replicas
    serving: int = 0  # pods that answered requests in the last 15 s (their own metrics, in Prometheus)

    def row(self) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        desired = "-" if self.desired is None else str(self.desired)
        return (
            f"{self.seconds:6.0f}s  {self.phase:<4}  {fmt(self.query_value):>8}  {fmt(self.hpa_value):>8}"
            f"  {desired:>7}  {self.ready:>5}  {self.serving:>7}"
        )


HEADER = f"{'time':>7}  {'load':<4}  {'query':>8}  {'HPA read':>8}  {'desired':>7}  {'ready':>5}  {'serving':>7}"


@dataclass
class Timeline:
    metric: str
    target: float
    samples: list[Sample] = field(default_factory=list)

    def most_ready(self, phase: str) -> int:
        return max((s.ready for s in self.samples if s.phase == phase), default=0)

    def most_serving(self, phase: str) -> int:
        return max((s.serving for s in self.samples if s.phase == phase), default=0)

    def last(self) -> Sample:
        return self.samples[-1]

    def table(self) -> str:
        return "\n".join([HEADER, *(s.row() for s in self.samples)])

    def plot(self, path: Path, unit: str) -> None:
        """A PNG: the metric with its target, and desired/ready replicas, over time."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        seconds = [s.seconds for s in self.samples]
        per_replica = " per replica" if self.metric != "latency" else ""
        figure, (metric_axis, replica_axis) = plt.subplots(2, 1, sharex=True, figsize=(8, 5.5))
        metric_axis.plot(
            seconds, [s.query_value for s in self.samples], label=f"{self.metric} ({unit}): the ScaledObject's query"
        )
        metric_axis.plot(
            seconds, [s.hpa_value for s in self.samples], "x", label=f"what the HPA read through KEDA{per_replica}"
        )
        metric_axis.axhline(
            self.target, color="grey", linestyle="--", label=f"target {self.target:g} {unit}{per_replica}"
        )
        values = [v for s in self.samples for v in (s.query_value, s.hpa_value) if v is not None and not math.isnan(v)]
        top = 1.6 * max([*values, self.target])  # headroom for the legend
        metric_axis.set_ylim(-0.04 * top, top)
        metric_axis.set_ylabel(unit)
        metric_axis.legend(loc="upper right", fontsize="small")
        replica_axis.step(seconds, [s.ready for s in self.samples], where="post", label="ready (Deployment)")
        replica_axis.step(
            seconds, [s.desired for s in self.samples], where="post", linestyle="--", label="desired (HPA)"
        )
        replica_axis.set_ylim(0, 1.6 * max(s.ready for s in self.samples))
        replica_axis.set_ylabel("replicas")
        replica_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        replica_axis.set_xlabel("seconds")
        replica_axis.legend(loc="upper right")
        for axis in (metric_axis, replica_axis):
            load_end = next((s.seconds for s in self.samples if s.phase == IDLE), None)
            if load_end is not None:
                axis.axvspan(0, load_end, color="orange", alpha=0.08)
        figure.suptitle(f"autoscaling on {self.metric}: load (shaded), then none (no requests in a minute: no value)")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)


def _get(tools: Tools, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """The object, or {} while it does not exist."""
    found: dict[str, Any] = get_json(tools, kind, name, "-n", namespace) or {}
    return found


def scaled_object_query(tools: Tools, namespace: str, name: str) -> str:
    """The PromQL KEDA runs for the ScaledObject, as the operator wrote it."""
    scaled = _get(tools, namespace, "scaledobject", name)
    return str(scaled["spec"]["triggers"][0]["metadata"]["query"])


def _hpa_value(hpa: dict[str, Any]) -> float | None:
    for metric in (hpa.get("status") or {}).get("currentMetrics") or []:
        current = (metric.get("external") or {}).get("current") or {}
        quantity = current.get("value") or current.get("averageValue")
        if quantity is not None:
            return _quantity(str(quantity))
    return None


def _quantity(text: str) -> float:
    """Kubernetes quantities as the HPA writes them: plain, or milli-units (`12500m`)."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def take_sample(
    tools: Tools, prometheus: Prometheus, namespace: str, scaled_object: str, deployment: str, phase: str, since: float
) -> Sample:
    query = scaled_object_query(tools, namespace, scaled_object)
    hpa = _get(tools, namespace, "hpa", f"keda-hpa-{scaled_object}")
    status = _get(tools, namespace, "deployment", deployment).get("status") or {}
    serving = prometheus.value(
        f'count(rate(recmodel_requests_total{{namespace="{namespace}",pod=~"{deployment}-.*"}}[15s]) > 0)'
    )
    return Sample(
        seconds=time.monotonic() - since,
        phase=phase,
        query_value=prometheus.value(query),
        hpa_value=_hpa_value(hpa),
        desired=(hpa.get("status") or {}).get("desiredReplicas"),
        ready=int(status.get("readyReplicas") or 0),
        serving=int(serving or 0),
    )


TARGETS = {"latency": LATENCY_TARGET_MS, "rps": RPS_TARGET}
UNITS = {"latency": "ms", "rps": "requests/s"}


def autoscaled(name: str, metric: str, max_replicas: int = 4, scale_down_window_s: int = 10) -> dict[str, Any]:
    """A standalone RecModel scaled through KEDA on `metric`, the HPA's scale-down window
    shortened through the RecModel's own field (Kubernetes' default, 300 s, stays for users)."""
    obj = small_standalone(name)
    obj["spec"]["autoscaling"] = {
        "metric": metric,
        "target": TARGETS[metric],
        "minReplicas": 1,
        "maxReplicas": max_replicas,
        "scaleDownStabilizationSeconds": scale_down_window_s,
    }
    if metric == "latency":
        obj["spec"]["server"] = LATENCY_SERVER
    return obj


@dataclass(frozen=True)
class Endpoint:
    """Where a RecModel answers: its predict URL at the ingress controller, and the Host."""

    url: str
    host: str


def load_for(metric: str, endpoint: Endpoint, body: Path, workdir: Path) -> AbstractContextManager[Any]:
    """The load that overshoots `metric`'s target (at most 5 minutes)."""
    if metric == "latency":
        return vegeta_load(endpoint, body, workdir, 300, workers=LATENCY_WORKERS)
    return vegeta_load(endpoint, body, workdir, 300, rate=RPS_LOAD_RATE)


# Each replica's share of the real node: four fit in its two cores beside what else runs there.
REPLICA_RESOURCES = {"cpu": "250m", "memory": "1Gi"}


def scaled_model(tools: Tools, namespace: str, obj: dict[str, Any], image: str, storage_uri: str) -> Endpoint:
    """Applies the RecModel on the real nodes (pods of `image` serving `storage_uri`, e.g. a
    `model_claim`) behind an Ingress, and waits until KEDA has made its HPA, the minimum
    replicas are Ready (their readiness probes, run by the kubelet) and the ingress answers."""
    name = obj["metadata"]["name"]
    if tools.ingress_url is None:
        raise RuntimeError("the cluster runs without its add-ons (no real nodes, ingress or Prometheus)")
    host = f"{name}.{namespace}.shop.example"
    placed = on_real_nodes(obj, image, storage_uri, host)
    placed["spec"]["resources"] = dict(REPLICA_RESOURCES)
    apply(tools, namespace, placed)
    deployment = f"{name}-predictor"
    scaled = wait_for(
        lambda: (
            (so := get_json(tools, "scaledobject", deployment, "-n", namespace))
            and (condition(so, "Ready") or {}).get("status") == "True"
            and so
        ),
        timeout=90,
        what="KEDA reports the ScaledObject Ready",
    )
    assert scaled["status"]["hpaName"] == f"keda-hpa-{deployment}", scaled["status"]
    minimum = obj["spec"]["autoscaling"]["minReplicas"]
    wait_for(
        lambda: (_get(tools, namespace, "deployment", deployment).get("status") or {}).get("readyReplicas") == minimum,
        timeout=PULL_TIMEOUT,
        what="the minimum replicas ready",
    )
    endpoint = Endpoint(f"{tools.ingress_url}/v1/models/{name}:predict", host)
    body = {"instances": [make_request(10)]}
    wait_for(
        lambda: httpx.post(endpoint.url, json=body, headers={"host": host}, timeout=10).status_code == 200,
        timeout=60,
        what="an answer through the ingress",
    )
    return endpoint


@contextmanager
def vegeta_load(
    endpoint: Endpoint,
    body: Path,
    workdir: Path,
    duration_s: int,
    *,
    rate: int | None = None,
    workers: int | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """POSTs `body` to the endpoint with vegeta, at `rate`/s (open loop) or from `workers` clients
    back to back (closed loop), for at most `duration_s` (it stops by itself); leaving the
    block stops it earlier."""
    if (rate is None) == (workers is None):
        raise ValueError("give a rate or a number of workers")
    pace = [f"-rate={rate}/s"] if rate is not None else ["-rate=0", f"-workers={workers}", f"-max-workers={workers}"]
    targets = workdir / "targets.txt"
    targets.write_text(f"POST {endpoint.url}\nHost: {endpoint.host}\nContent-Type: application/json\n@{body}\n")
    with (workdir / "vegeta.bin").open("wb") as out:
        process = subprocess.Popen(
            [
                str(bin_dir() / f"vegeta-{VEGETA_VERSION}"),
                "attack",
                f"-targets={targets}",
                *pace,
                f"-duration={duration_s}s",
                "-timeout=10s",
            ],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield process
    finally:
        stop_process(process)


def run_loop(
    tools: Tools,
    prometheus: Prometheus,
    namespace: str,
    obj: dict[str, Any],
    start_load: Callable[[], AbstractContextManager[Any]],
    *,
    scale_up_timeout: float = 240,
    min_load_seconds: float = 30,
    scale_down_timeout: float = 300,
    interval: float = 3,
    echo: Callable[[str], Any] = print,
) -> Timeline:
    """Loads (through `start_load`) until the Deployment of the RecModel `obj` has its most
    replicas ready and each has answered requests (and for `min_load_seconds` at least, to show
    the steady state), stops, and
    samples until it is back at its fewest. Prints each sample
    through `echo`. Returns the timeline; the caller asserts on it."""
    autoscaling = obj["spec"]["autoscaling"]
    max_replicas, min_replicas = autoscaling["maxReplicas"], autoscaling["minReplicas"]
    deployment = scaled_object = f"{obj['metadata']['name']}-predictor"
    timeline = Timeline(metric=autoscaling["metric"], target=autoscaling["target"])
    since = time.monotonic()
    echo(HEADER)

    def record(phase: str) -> Sample:
        sample = take_sample(tools, prometheus, namespace, scaled_object, deployment, phase, since)
        timeline.samples.append(sample)
        echo(sample.row())
        return sample

    with start_load():
        deadline = time.monotonic() + scale_up_timeout
        while time.monotonic() < deadline:
            sample = record(LOAD)
            if sample.ready >= max_replicas and sample.serving >= max_replicas and sample.seconds >= min_load_seconds:
                break
            time.sleep(interval)
    deadline = time.monotonic() + scale_down_timeout
    while record(IDLE).ready > min_replicas and time.monotonic() < deadline:
        time.sleep(interval)
    return timeline
