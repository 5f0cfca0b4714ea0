"""A model server on the real node: the kubelet runs our `recmodel-server` image, built by
`make images` and pulled from the local registry, as a container under containerd and runc.
Everything checked here is what only a real node does: the image's own files, its non-root
user, a read-only root, the memory limit in the container's cgroup, the kubelet's readiness
probe, `kubectl logs` and `kubectl exec` through the API server, and a graceful stop."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster.common.podnet import real_node_cidr
from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import apply, namespace_report, ready_pods, wait_for
from devcluster.images import build as images
from devcluster.nodes.specs import REAL_NODES, REAL_PLACEMENT
from recmodel_handlers.tools.samples import make_request
from recmodel_operator.render import pod as rendered

pytestmark = pytest.mark.slow  # the first run builds the image (docs/development.md)

NODE = REAL_NODES[0]
NODE_IP = str(real_node_cidr(NODE.index).network_address + 1)  # the node's bridge: pods reach it
MEMORY_LIMIT = 2 * 1024**3


@pytest.fixture(scope="module")
def server_image() -> str:
    """The image as `make images` builds and pushes it (cached by content)."""
    (built,) = images.build_all(["recmodel-server"])
    return built.reference


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
        timeout=600,  # a cold node pulls the image (gigabytes: torch with CUDA) first
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

    # Deleting the pod drains it: SIGTERM, the server finishes and exits on its own (0, not 137).
    seen: list[dict[str, Any]] = []
    watcher = threading.Thread(target=_watch_termination, args=(tools, namespace, name, seen), daemon=True)
    watcher.start()
    tools.kubectl_run("delete", "pod", "-n", namespace, name, "--wait=false")
    watcher.join(timeout=120)
    assert seen, f"no terminated state was reported for {name}"
    assert seen[0]["exitCode"] == 0, seen[0]
