"""`make demo`: from nothing to ranked products through an ingress, on the local control plane.

1. start the control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes)
2. KServe runs in the cluster (its controller and webhooks); `helm install` the RecModel chart
3. run the operator (as a local process, with the chart's ServiceAccount token)
4. train and package a small model
5. `kubectl apply` two samples (a CPU ranker and an A100 ranker) and wait until Ready
6. start the model server with the exact command the operator rendered
7. send ranking requests through an ingress (routing by Host, from the rendered Ingress)
8. tear everything down (or keep it: --keep)
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
from devcluster.servers import kserve_server
from devcluster.testing import install_crds, running_operator, service_account_kubeconfig, wait_for
from recmodel_handlers.client import predict
from recmodel_handlers.samples import make_request

REPO = Path(__file__).resolve().parent.parent
SAMPLES = ("04-standalone-hpa.yaml", "07-gpu-standalone.yaml", "01-cpu-kserve.yaml")
NAMESPACE = "shop"


def step(number: int, text: str) -> None:
    print(f"\n\033[1m[{number}/8] {text}\033[0m", flush=True)


def show(command: list[str], output: str) -> None:
    print("$ " + " ".join(command))
    print(output.rstrip())


def kubectl(tools: Tools, *args: str) -> str:
    out = tools.kubectl_run(*args).stdout
    show(["kubectl", *args], out)
    return out


def rendered_server_command(tools: Tools, deployment: str) -> list[str]:
    obj = json.loads(tools.kubectl_run("get", "deployment", deployment, "-n", NAMESPACE, "-o", "json").stdout)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return [*container["command"], *container["args"]]


def localize(argv: list[str], model_dir: Path) -> list[str]:
    """The pod's command, pointed at the local model folder; host and port are set by the runner."""
    out = [str(Path(sys.executable).parent / argv[0])]
    for arg in argv[1:]:
        if arg.startswith(("--host=", "--http-port=")):
            continue
        out.append(f"--model-dir={model_dir}" if arg.startswith("--model-dir=") else arg)
    return out


def _is_ready(tools: Tools, name: str) -> bool:
    obj = json.loads(tools.kubectl_run("get", "recmodel", name, "-n", NAMESPACE, "-o", "json").stdout)
    return bool((obj.get("status") or {}).get("phase") == "Ready")


def run(keep: bool) -> None:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="recmodel-demo-"))
    with ExitStack() as stack:
        step(1, "Local control plane (real Kubernetes components as processes, KWOK nodes)")
        was_running = cluster.is_running()
        info = cluster.up()
        if not was_running and not keep:
            stack.callback(cluster.down)
        tools = Tools(kubeconfig=info.kubeconfig, kubectl=info.bin_dir / "kubectl", helm=info.bin_dir / "helm")
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
            argv = rendered_server_command(tools, f"{name}-predictor")
            print("pod command:   " + " ".join(argv))
            local = localize(argv, model_dir)
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

        step(8, "Done" + (": keeping everything running (--keep)" if keep else ": tearing down"))
        if keep:
            stack.pop_all()
            print(f"KUBECONFIG={info.kubeconfig}; stop with `make cluster-down`")
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster, operator install and samples running")
    run(parser.parse_args().keep)


if __name__ == "__main__":
    main()
