"""Model servers on the real nodes: the kubelet runs our `recmodel-server` image, built by
`make images` and pulled from the local registry, as a container under containerd and runc.
Everything checked here is what only a real node does: the image's own files, its non-root
user, a read-only root, the memory limit in the container's cgroup, the kubelet's readiness
probe, `kubectl logs` and `kubectl exec` through the API server, a graceful stop; a GPU
RecModel admitted by the kubelet on the GPU node with a device from its device plugin; and
KServe's real storage-initializer downloading a model over https before the predictor serves it."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster.common import pki
from devcluster.common.podnet import real_node_cidr
from devcluster.common.ports import free_ports
from devcluster.common.processes import Layout
from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import (
    PULL_TIMEOUT,
    OperatorProcess,
    apply,
    get_json,
    model_claim,
    namespace_report,
    on_real_nodes,
    pod_url,
    ready_pods,
    small_standalone,
    wait_for,
    wait_phase,
)
from devcluster.nodes.specs import GPU_RESOURCE, REAL_NODES, REAL_PLACEMENT
from recmodel_handlers.tools.samples import make_request
from recmodel_operator.render import pod as rendered

pytestmark = pytest.mark.slow  # the first run builds the image (docs/development.md)

NODE = REAL_NODES[0]
(GPU_NODE,) = [spec for spec in REAL_NODES if spec.gpus]
NODE_IP = str(real_node_cidr(NODE.index).network_address + 1)  # the node's bridge: pods reach it
MEMORY_LIMIT = 2 * 1024**3


def _server_pod(image: str, model_dir: Path) -> dict[str, Any]:
    """A model-server pod as the operator renders one (its security context and probes), with the
    package on a read-only hostPath (this machine is the node)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ranker", "labels": {"app": "ranker"}},
        "spec": {
            **REAL_PLACEMENT,
            "securityContext": rendered.pod_security_context(),
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "server",
                    "image": image,
                    "args": [
                        "recmodel",
                        "serve",
                        "--model-dir=/mnt/models",
                        "--name=ranker",
                        "--host=0.0.0.0",
                        "--http-port=8080",
                    ],
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}},
                    "securityContext": rendered.container_security_context(),
                    "volumeMounts": [
                        {"name": "model", "mountPath": "/mnt/models", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},  # the root is read-only
                    ],
                    **rendered.http_probes(),
                }
            ],
            "volumes": [
                {"name": "model", "hostPath": {"path": str(model_dir), "type": "Directory"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def _exec(tools: Tools, namespace: str, pod: str, *command: str) -> subprocess.CompletedProcess[str]:
    return tools.kubectl_run("exec", "-n", namespace, pod, "-c", "server", "--", *command, check=False)


def _watch_termination(tools: Tools, namespace: str, pod: str, seen: list[dict[str, Any]]) -> None:
    """Records the server container's terminated state as the kubelet reports it."""
    watch_args = ["get", "pod", pod, "-n", namespace, "--watch", "--output-watch-events", "-o", "json"]
    watch = subprocess.Popen(
        [str(tools.kubectl), f"--kubeconfig={tools.kubeconfig}", *watch_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watch.stdout is not None
    decoder, buffer = json.JSONDecoder(), ""
    try:
        for line in watch.stdout:
            buffer += line
            try:
                event, _ = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            buffer = ""
            for status in event["object"].get("status", {}).get("containerStatuses", []):
                if status["name"] == "server" and "terminated" in status.get("state", {}):
                    seen.append(status["state"]["terminated"])
                    return
            if event["type"] == "DELETED":
                return
    finally:
        watch.kill()


def test_a_pod_of_our_image_runs_on_the_real_node_as_a_real_container(
    cluster: Tools, server_image: str, namespace: str, trained_model: Path
) -> None:
    tools = cluster
    model_dir = trained_model.resolve()
    apply(tools, namespace, _server_pod(server_image, model_dir))
    (pod,) = wait_for(
        lambda: ready_pods(tools, namespace, "app=ranker"),
        timeout=PULL_TIMEOUT,
        what="the ranker's pod Ready on the real node",
        explain=lambda: namespace_report(tools, namespace),
    )
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == NODE.name
    assert pod["status"]["podIP"].startswith(NODE_IP.rsplit(".", 1)[0] + ".")
    # Ready is the kubelet's own verdict from the readiness probe (no one else writes it here).
    (server,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == "server"]
    assert server["ready"] and server["imageID"], server
    assert server["image"].endswith("/recmodel/recmodel-server:0.1.0"), server["image"]

    logs = tools.kubectl_run("logs", "-n", namespace, name, "-c", "server").stdout
    assert "Uvicorn running" in logs or "Started server process" in logs, logs[-2000:]

    # The image's files, not this machine's: our package lives at /src in the image only.
    assert _exec(tools, namespace, name, "test", "-f", "/src/model_handlers/pyproject.toml").returncode == 0
    assert _exec(tools, namespace, name, "test", "-e", str(Path(__file__).resolve())).returncode != 0
    assert _exec(tools, namespace, name, "id", "-u").stdout.strip() == "1000"
    write = _exec(tools, namespace, name, "touch", "/written-by-the-test")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write
    limit = _exec(tools, namespace, name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    assert int(limit) == MEMORY_LIMIT, limit

    # A ranking request answered by that container, at its pod IP.
    answer = httpx.post(
        f"http://{pod['status']['podIP']}:8080/v1/models/ranker:predict",
        json={"instances": [make_request(50)]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"][0]["items"]) > 0

    # A Service from inside a pod, by its ClusterIP and by its name: kube-proxy (nftables) sends
    # it to the endpoint, here the pod itself (hairpin); CoreDNS behind kube-dns names it (not
    # after the pod: a pod's own name is in its /etc/hosts).
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ranking"},
        "spec": {"selector": {"app": "ranker"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(tools, namespace, service)
    cluster_ip = get_json(tools, "service", "ranking", "-n", namespace)["spec"]["clusterIP"]
    for where in (cluster_ip, "ranking", f"ranking.{namespace}.svc.cluster.local"):
        probe = f"import urllib.request as u; print(u.urlopen('http://{where}/v2/health/ready', timeout=5).status)"
        run = functools.partial(_exec, tools, namespace, name, "python3", "-c", probe)
        wait_for(
            lambda: run().stdout.strip() == "200",  # noqa: B023 - waited for within the iteration
            timeout=60,
            what=f"the Service as http://{where} from inside the pod",
            explain=lambda: run().stderr[-2000:],  # noqa: B023
        )
    resolved = _exec(tools, namespace, name, "getent", "hosts", f"ranking.{namespace}.svc.cluster.local").stdout
    assert resolved.split()[:1] == [cluster_ip], resolved

    # The API server as a pod finds it (in-cluster config): kubernetes.default.svc by name, its
    # certificate checked against the service account's ca.crt, the pod's own token.
    api = (
        "import ssl, urllib.request as u; d = '/var/run/secrets/kubernetes.io/serviceaccount/'; "
        "c = ssl.create_default_context(cafile=d + 'ca.crt'); "
        "r = u.Request('https://kubernetes.default.svc/version', headers={'Authorization': 'Bearer ' + open(d + 'token').read()}); "
        "print(u.urlopen(r, context=c, timeout=5).status)"
    )
    reached = _exec(tools, namespace, name, "python3", "-c", api)
    assert reached.stdout.strip() == "200", reached.stderr[-2000:]

    # Deleting the pod drains it: SIGTERM, the server finishes and exits on its own (0, not 137).
    seen: list[dict[str, Any]] = []
    watcher = threading.Thread(target=_watch_termination, args=(tools, namespace, name, seen), daemon=True)
    watcher.start()
    tools.kubectl_run("delete", "pod", "-n", namespace, name, "--wait=false")
    watcher.join(timeout=120)
    assert seen, f"no terminated state was reported for {name}"
    assert seen[0]["exitCode"] == 0, seen[0]


def test_a_gpu_recmodel_runs_on_the_gpu_node_with_a_device_from_its_plugin(
    operator: OperatorProcess, server_image: str, namespace: str, trained_model: Path
) -> None:
    """The GPU node's `nvidia.com/gpu` capacity comes from our device plugin through the
    kubelet's device-plugin API; a one-GPU RecModel is scheduled there past its GPU taint, the
    kubelet allocates it one of the plugin's devices and passes it in the container's
    environment, as NVIDIA's plugin does (the model runs on the CPU: there is no GPU here)."""
    tools = operator.tools
    node = get_json(tools, "node", GPU_NODE.name)
    assert node["status"]["allocatable"][GPU_RESOURCE] == str(GPU_NODE.gpus), node["status"]
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == GPU_NODE.gpu_product
    with model_claim(tools, namespace, trained_model.resolve()) as claim:
        obj = on_real_nodes(small_standalone("ranker"), server_image, f"pvc://{claim}")
        obj["spec"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
        obj["spec"]["resources"]["gpu"] = {"count": 1, "product": GPU_NODE.gpu_product}
        apply(tools, namespace, obj)
        (pod,) = wait_for(
            lambda: ready_pods(tools, namespace, "app.kubernetes.io/instance=ranker"),
            timeout=PULL_TIMEOUT,
            what="the GPU RecModel's pod Ready",
            explain=lambda: namespace_report(tools, namespace),
        )
        assert pod["spec"]["nodeName"] == GPU_NODE.name
        name, container = pod["metadata"]["name"], pod["spec"]["containers"][0]["name"]
        visible = tools.kubectl_run(
            "exec", "-n", namespace, name, "-c", container, "--", "printenv", "NVIDIA_VISIBLE_DEVICES"
        ).stdout.strip()
        assert visible.startswith(f"GPU-fake-{GPU_NODE.gpu_product}-") and "," not in visible, visible
        answer = httpx.post(
            f"{pod_url(pod)}/v1/models/ranker:predict", json={"instances": [make_request(50)]}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        wait_phase(tools, namespace, "ranker", "Ready", timeout=60)


@contextmanager
def serving_over_https(folder: Path, cert: Path, key: Path, address: str) -> Iterator[str]:
    """`folder`'s files over https at `address` (the real node's bridge, which its pods reach),
    with a certificate from the cluster's CA; yields the base URL."""
    (port,) = free_ports(1)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((address, port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{address}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_kserve_storage_initializer_downloads_the_model_over_https_on_the_real_node(
    operator: OperatorProcess,
    built_images: dict[str, str],
    namespace: str,
    trained_model: Path,
    tmp_path: Path,
) -> None:
    """backend kserve with an https:// storage URI: KServe's webhook injects its storage
    initializer (our build of it, from the local registry), which downloads and unpacks the
    zipped package from a server on this machine, trusting the cluster's CA through KServe's
    caBundleConfigMapName; then the predictor container serves it, through KServe's Ingress."""
    tools = operator.tools
    shutil.make_archive(str(tmp_path / "site" / "ranker"), "zip", root_dir=trained_model)
    cluster_pki = Layout(tools.kubeconfig.parent).pki  # the cluster's CA, which KServe's bundle holds
    cert, key = pki.issue_server(cluster_pki, "models", NODE_IP, tmp_path / "models")
    with serving_over_https(tmp_path / "site", cert, key, NODE_IP) as site:
        obj = on_real_nodes(small_standalone("ranker"), built_images["recmodel-server"], f"{site}/ranker.zip")
        obj["spec"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
        obj["spec"]["backend"] = "kserve"
        apply(tools, namespace, obj)
        (pod,) = wait_for(
            lambda: ready_pods(tools, namespace, "serving.kserve.io/inferenceservice=ranker"),
            timeout=PULL_TIMEOUT,
            what="the predictor's pod Ready on the real node",
            explain=lambda: namespace_report(tools, namespace),
        )
    assert pod["spec"]["nodeName"] in {spec.name for spec in REAL_NODES if not spec.gpus}
    (init,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "storage-initializer"]
    assert init["image"] == built_images["storage-initializer"], init["image"]
    (done,) = [s for s in pod["status"]["initContainerStatuses"] if s["name"] == "storage-initializer"]
    assert done["state"]["terminated"]["exitCode"] == 0, done
    logs = tools.kubectl_run("logs", "-n", namespace, pod["metadata"]["name"], "-c", "storage-initializer").stdout
    assert "Trusting the CA bundle" in logs and "ranker.zip" in logs, logs[-3000:]

    ingress = wait_for(
        lambda: next(iter(get_json(tools, "ingress", "-n", namespace)["items"]), None),
        timeout=120,
        what="KServe's Ingress (written once its predictor is ready)",
    )
    assert tools.ingress_url is not None
    answer = httpx.post(
        f"{tools.ingress_url}/v1/models/ranker:predict",
        json={"instances": [make_request(50)]},
        headers={"host": ingress["spec"]["rules"][0]["host"]},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"][0]["items"]) > 0
