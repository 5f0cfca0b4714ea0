"""`make demo`: from nothing to ranked products through an ingress, on the local control plane.

1. start the control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes,
   real nodes: kubelets with containerd, kube-proxy, CoreDNS; an ingress controller driving
   nginx), and build the server image into the local registry (`make images`)
2. KServe runs in the cluster (its controller and webhooks); `helm install` the RecModel chart
3. run the operator (as a local process, with the chart's ServiceAccount token)
4. train and package a small model, and put it on a volume claim the real node mounts
5. `kubectl apply` three samples (CPU, A100 and KServe rankers; KWOK places them) until Ready
6. two RecModels on the real node (standalone and KServe): their pods are containers of the
   built server image
7. ranking requests through the ingress controller, answered by those pods
8. autoscaling on p95 latency: load through the ingress, Prometheus scrapes the pods, KEDA
   reads it, the HPA adds replicas, the kubelet runs them and they take traffic; load stops,
   replicas go back (timeline + PNG)
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

from devcluster.addons.prometheus import Prometheus
from devcluster.controlplane import cluster
from devcluster.harness.fixtures import Tools
from devcluster.harness.scaling_loop import LATENCY_WORKERS, UNITS, autoscaled, load_for, run_loop, scaled_model
from devcluster.harness.servers import scraped
from devcluster.harness.testing import (
    apply,
    get_json,
    install_crds,
    model_claim,
    on_real_nodes,
    pod_url,
    ready_pods,
    running_operator,
    service_account_kubeconfig,
    small_standalone,
    wait_for,
)
from devcluster.images import build as images
from recmodel_handlers.tools.client import predict
from recmodel_handlers.tools.samples import make_request

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
        step(
            1,
            "Local control plane (real Kubernetes components as processes, KWOK and real nodes, an ingress controller)",
        )
        was_running = cluster.is_running()
        info = cluster.up()
        if not was_running and not keep:
            stack.callback(cluster.down)
        tools = Tools.of(info)
        kubectl(tools, "get", "nodes", "-L", "type,nvidia.com/gpu.product")
        built = {b.spec.name: b.reference for b in images.build_all(["recmodel-server", "storage-initializer"])}
        server_image = built["recmodel-server"]
        print(f"server image (built from model_handlers/Dockerfile, in the local registry): {server_image}")

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

        step(6, "Two RecModels on the real node: the kubelet runs their pods from the built server image")
        claim = stack.enter_context(model_claim(tools, NAMESPACE, model_dir))
        uri = f"pvc://{claim}"
        standalone = small_standalone("home-feed")
        standalone["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 2, "metric": "cpu", "target": 70}
        standalone["spec"]["resources"] = {"cpu": "250m", "memory": "1Gi"}
        kserve = small_standalone("search-ranker")
        kserve["spec"]["backend"] = "kserve"
        kserve["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1, "metric": "concurrency", "target": 4}
        kserve["spec"]["resources"] = {"cpu": "250m", "memory": "1Gi"}
        hosts = {"home-feed": "home-feed.shop.example"}
        for obj in (standalone, kserve):
            name = obj["metadata"]["name"]
            placed = on_real_nodes(obj, server_image, uri, hosts.get(name))  # KServe writes its own Ingress
            print(f"{name}: storageUri {uri}, placement {json.dumps(placed['spec']['placement'])}")
            apply(tools, NAMESPACE, placed)
        for name in ("home-feed", "search-ranker"):
            wait_for(functools.partial(_is_ready, tools, name), timeout=600, what=f"{name} Ready")  # a cold pull
        ingress = wait_for(
            lambda: get_json(tools, "ingress", "search-ranker", "-n", NAMESPACE), timeout=60, what="KServe's Ingress"
        )
        hosts["search-ranker"] = ingress["spec"]["rules"][0]["host"]
        kubectl(tools, "get", "pods", "-n", NAMESPACE, "-o", "wide", "--field-selector=spec.nodeName=real-node-1")
        kubectl(tools, "get", "endpointslices", "-n", NAMESPACE)
        kubectl(tools, "get", "ingress", "-n", NAMESPACE)

        step(7, f"Ranking requests through the ingress controller at {info.ingress_url} (nginx, routing by Host)")
        assert info.ingress_url is not None
        request = make_request(1000, top_k=5, maxPerCategory=2)
        for name, host in hosts.items():
            pods = ready_pods(tools, NAMESPACE, f"app.kubernetes.io/instance={name}") or ready_pods(
                tools, NAMESPACE, f"serving.kserve.io/inferenceservice={name}"
            )
            before = {p["metadata"]["name"]: scraped(pod_url(p), "recmodel_requests_total", code="200") for p in pods}
            latencies = []
            answer: dict[str, Any] = {}
            for _ in range(20):
                answer = predict(info.ingress_url, name, request, host=host)
                latencies.append(answer["latency_ms"])
            latencies.sort()
            print(f"\nPOST {info.ingress_url}/v1/models/{name}:predict  Host: {host}  (1000 candidates)")
            for rank, item in enumerate(answer["predictions"][0]["items"], start=1):
                print(f"  {rank}. {item['id']:<14} score {item['score']:.4f}")
            print(
                f"  latency over 20 requests: p50 {latencies[10]:.1f} ms, p95 {latencies[18]:.1f} ms (client side, through the ingress)"
            )
            answered = {
                f"{p['metadata']['name']} ({p['status']['podIP']})": int(
                    scraped(pod_url(p), "recmodel_requests_total", code="200") - before[p["metadata"]["name"]]
                )
                for p in pods
            }
            print(f"  answered by (each pod's own /metrics): {answered}")

        step(
            8,
            "Autoscaling on p95 latency: Prometheus scrapes the pods, KEDA reads Prometheus, the HPA scales, new pods take traffic",
        )
        autoscaled_ranker = autoscaled("autoscaled-ranker", "latency", scale_down_window_s=15)
        print("spec.autoscaling: " + json.dumps(autoscaled_ranker["spec"]["autoscaling"]))
        endpoint = scaled_model(tools, NAMESPACE, autoscaled_ranker, server_image, uri)
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
            lambda: load_for("latency", endpoint, body, work),
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
