"""`make demo`: from nothing to ranked products through an ingress, on the local control plane.

1. start the control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes)
2. KServe runs in the cluster (its controller and webhooks); `helm install` the RecModel chart
3. run the operator (as a local process, with the chart's ServiceAccount token)
4. train and package a small model
5. `kubectl apply` two samples (a CPU ranker and an A100 ranker) and wait until Ready
6. start the model server with the exact command the operator rendered
7. send ranking requests through an ingress (routing by Host, from the rendered Ingress)
8. autoscaling on p95 latency: load on a model server scraped by the cluster's Prometheus, KEDA
   reads it, the HPA adds replicas, KWOK runs them; load stops, replicas go back (timeline + PNG)
9. tear everything down (or keep it: --keep)
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from demo.ingress import running_ingress
from devcluster import cluster
from devcluster.fixtures import Tools
from devcluster.prometheus import Prometheus
from devcluster.scaling_loop import LATENCY_WORKERS, UNITS, autoscaled, load_for, run_loop, scaled_model
from devcluster.servers import kserve_server, local_command
from devcluster.testing import (
    install_crds,
    rendered_container,
    running_operator,
    service_account_kubeconfig,
    wait_for,
)
from recmodel_handlers.client import predict
from recmodel_handlers.samples import make_request

REPO = Path(__file__).resolve().parent.parent
SAMPLES = ("04-standalone-hpa.yaml", "07-gpu-standalone.yaml", "01-cpu-kserve.yaml")
NAMESPACE = "shop"


def step(number: int, text: str) -> None:
    print(f"\n\033[1m[{number}/9] {text}\033[0m", flush=True)


def show(command: list[str], output: str) -> None:
    print("$ " + " ".join(command))
    print(output.rstrip())


def kubectl(tools: Tools, *args: str) -> str:
    out = tools.kubectl_run(*args).stdout
    show(["kubectl", *args], out)
    return out


def _is_ready(tools: Tools, name: str) -> bool:
    obj = json.loads(tools.kubectl_run("get", "recmodel", name, "-n", NAMESPACE, "-o", "json").stdout)
    return bool((obj.get("status") or {}).get("phase") == "Ready")


def run(keep: bool, plot: Path | None) -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="recmodel-demo-"))
    plot = plot or work / "autoscaling-latency.png"
    with ExitStack() as stack:
        step(1, "Local control plane (real Kubernetes components as processes, KWOK nodes)")
        was_running = cluster.is_running()
        info = cluster.up()
        if not was_running and not keep:
            stack.callback(cluster.down)
        tools = Tools.of(info)
        kubectl(tools, "get", "nodes", "-L", "nvidia.com/gpu.product")

        step(2, "KServe's controller runs in the cluster; helm install of the RecModel chart (and its runtime)")
        install_crds(tools)
        tools.helm_run(
            "upgrade",
            "--install",
            "recmodel",
            str(REPO / "charts" / "recmodel-operator"),
            "-n",
            "recmodel-system",
            "--create-namespace",
            "--wait",
        )
        if not keep:
            stack.callback(
                lambda: tools.helm_run("uninstall", "recmodel", "-n", "recmodel-system", "--wait", check=False)
            )
        kubectl(tools, "get", "deployment,clusterservingruntime", "-n", "recmodel-system")

        step(3, "The operator, with the chart's ServiceAccount (its RBAC, nothing more)")
        kubeconfig = service_account_kubeconfig(tools, "recmodel-system", "recmodel", work / "operator.kubeconfig")
        operator = stack.enter_context(running_operator(tools, work / "operator.log", kubeconfig))
        print(
            f"operator healthy: {operator.healthy()} (metrics on 127.0.0.1:{operator.metrics_port}, log {work / 'operator.log'})"
        )

        step(4, "Train and package a small model (recmodel train)")
        model_dir = work / "model"
        train = subprocess.run(
            [
                str(Path(sys.executable).parent / "recmodel"),
                "train",
                f"--out={model_dir}",
                "--rows=60000",
                "--epochs=2",
                "--name=home-feed",
                "--version=v7",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        print(train.stdout.rstrip())

        step(5, f"kubectl apply {', '.join(SAMPLES)}, and wait until Ready")
        tools.kubectl_run("create", "namespace", NAMESPACE, check=False)
        if not keep:
            stack.callback(lambda: tools.kubectl_run("delete", "namespace", NAMESPACE, "--wait=false", check=False))
        for sample in SAMPLES:
            kubectl(tools, "apply", "-n", NAMESPACE, "-f", str(REPO / "manifests" / "samples" / sample))
        names = ["category-ranker", "gpu-home-feed", "search-ranker-cpu"]
        for name in names:
            wait_for(functools.partial(_is_ready, tools, name), timeout=120, what=f"{name} Ready")
        kubectl(tools, "get", "recmodels", "-n", NAMESPACE)
        kubectl(
            tools,
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-o",
            "custom-columns=POD:.metadata.name,NODE:.spec.nodeName,GPUS:.spec.containers[0].resources.limits.nvidia\\.com/gpu,STATUS:.status.phase",
        )
        kubectl(tools, "get", "ingress", "-n", NAMESPACE)
        kubectl(tools, "get", "inferenceservices", "-n", NAMESPACE)  # Ready as KServe's controller reports it

        step(6, "Model servers started with the exact command the operator rendered")
        routes: dict[str, list[str]] = {}  # ingress host -> local servers
        model_of: dict[str, str] = {}  # ingress host -> model name
        for name in names[:2]:  # the standalone ones (the KServe one is shown by KServe's status)
            container = rendered_container(tools, NAMESPACE, f"{name}-predictor")
            print("pod command:   " + " ".join([*container["command"], *container["args"]]))
            local = local_command(container, model_dir)
            url = stack.enter_context(kserve_server(model_dir, name, work / f"{name}.log", argv=local))
            ingress = json.loads(tools.kubectl_run("get", "ingress", name, "-n", NAMESPACE, "-o", "json").stdout)
            routes[ingress["spec"]["rules"][0]["host"]] = [url]
            model_of[ingress["spec"]["rules"][0]["host"]] = name
            print(f"local server:  {url} serves host {ingress['spec']['rules'][0]['host']}")

        step(7, "Ranking requests through the ingress (routed by Host header)")
        gateway = stack.enter_context(running_ingress(routes))
        request = make_request(1000, top_k=5, maxPerCategory=2)
        for host in routes:
            latencies = []
            answer: dict[str, Any] = {}
            for _ in range(20):
                answer = predict(gateway, model_of[host], request, host=host)
                latencies.append(answer["latency_ms"])
            latencies.sort()
            print(f"\nPOST {gateway}/v1/models/{model_of[host]}:predict  Host: {host}  (1000 candidates)")
            for rank, item in enumerate(answer["predictions"][0]["items"], start=1):
                print(f"  {rank}. {item['id']:<14} score {item['score']:.4f}")
            print(
                f"  latency over 20 requests: p50 {latencies[10]:.1f} ms, p95 {latencies[18]:.1f} ms (client side, through the ingress)"
            )

        step(8, "Autoscaling on p95 latency: Prometheus scrapes the server, KEDA reads Prometheus, the HPA scales")
        autoscaled_ranker = autoscaled("autoscaled-ranker", "latency", scale_down_window_s=15)
        print("spec.autoscaling: " + json.dumps(autoscaled_ranker["spec"]["autoscaling"]))
        predict_url = stack.enter_context(scaled_model(tools, NAMESPACE, autoscaled_ranker, model_dir, work))
        kubectl(tools, "get", "scaledobject,hpa", "-n", NAMESPACE)
        body = work / "autoscaling-request.json"
        body.write_text(json.dumps({"instances": [make_request(1000)]}))
        assert info.prometheus_url is not None
        print(
            f"load: {LATENCY_WORKERS} clients back to back (1,000 candidates each) until 4 replicas are ready, then none"
        )
        timeline = run_loop(
            tools,
            Prometheus(info.prometheus_url),
            NAMESPACE,
            autoscaled_ranker,
            lambda: load_for("latency", predict_url, body, work),
        )
        plot.parent.mkdir(parents=True, exist_ok=True)
        timeline.plot(plot, UNITS["latency"])
        print(f"timeline plotted to {plot}")

        step(9, "Done" + (": keeping everything running (--keep)" if keep else ": tearing down"))
        if keep:
            stack.pop_all()
            print(f"KUBECONFIG={info.kubeconfig}; stop with `make cluster-down`")
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster, operator install and samples running")
    parser.add_argument("--plot", type=Path, help="where to write the autoscaling timeline (PNG)")
    args = parser.parse_args()
    run(args.keep, args.plot)


if __name__ == "__main__":
    main()
