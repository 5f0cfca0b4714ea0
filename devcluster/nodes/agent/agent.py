"""The agent's node-level work: register the nodes, renew their Leases, hand pods to runners."""

from __future__ import annotations

import datetime
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from devcluster.common.informer import PODS, Informer, Obj, request
from devcluster.common.podnet import Allocator, node_cidr
from devcluster.nodes.agent.launch import Node
from devcluster.nodes.agent.pods import PodRunner, now_rfc3339
from devcluster.nodes.specs import NodeSpec, render_node

log = logging.getLogger("devcluster.nodes.agent")

LEASE_SECONDS = 40
RENEW_SECONDS = 10
AGENT_VERSION = "devcluster-node-agent"


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_status(spec: NodeSpec, node_ip: str) -> Obj:
    rendered = render_node(spec)["status"]
    conditions = [
        ("Ready", "True", "AgentReady", "the devcluster node agent runs this node's pods as processes"),
        ("MemoryPressure", "False", "AgentHasSufficientMemory", ""),
        ("DiskPressure", "False", "AgentHasNoDiskPressure", ""),
        ("PIDPressure", "False", "AgentHasSufficientPID", ""),
    ]
    now = now_rfc3339()
    return {
        **rendered,
        "conditions": [
            {"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now, "lastTransitionTime": now}
            for t, s, r, m in conditions
        ],
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": spec.name}],
        "nodeInfo": {
            "kubeletVersion": AGENT_VERSION,
            "containerRuntimeVersion": "process://local",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "kernelVersion": "",
            "osImage": "",
            "kubeProxyVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


@dataclass
class NodeRuntime:
    spec: NodeSpec
    allocator: Allocator
    informer: Informer | None = None


class NodeAgent:
    def __init__(self, api: client.ApiClient, nodes: list[tuple[int, NodeSpec]], node: Node, root: Path) -> None:
        self.api = api
        self.node = node
        self.root = root
        self.nodes = {spec.name: NodeRuntime(spec, Allocator(node_cidr(index))) for index, spec in nodes}
        self.runners: dict[str, PodRunner] = {}  # by pod uid
        self._lock = threading.Lock()

    def _register(self, runtime: NodeRuntime) -> None:
        spec = runtime.spec
        node = render_node(spec)
        node["spec"]["podCIDR"] = str(runtime.allocator.cidr)
        node["spec"]["podCIDRs"] = [str(runtime.allocator.cidr)]
        node.pop("status")
        try:
            request(self.api, "POST", "/api/v1/nodes", node)
        except client.ApiException as error:
            if error.status != 409:
                raise
        request(
            self.api,
            "PATCH",
            f"/api/v1/nodes/{spec.name}/status",
            {"status": node_status(spec, runtime.allocator.node_ip)},
            content_type="application/strategic-merge-patch+json",
        )
        log.info("node %s registered (pods %s)", spec.name, runtime.allocator.cidr)

    def _renew(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _micro_now()}
        try:
            request(self.api, "PATCH", path, {"spec": spec}, content_type="application/merge-patch+json")
        except client.ApiException as error:
            if error.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            request(self.api, "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    def _heartbeat(self, stop: threading.Event) -> None:
        ticks = 0
        while not stop.wait(RENEW_SECONDS):
            ticks += 1
            for name, runtime in self.nodes.items():
                try:
                    self._renew(name)
                    if ticks % 6 == 0:  # the Ready condition's heartbeat, once a minute
                        request(
                            self.api,
                            "PATCH",
                            f"/api/v1/nodes/{name}/status",
                            {"status": node_status(runtime.spec, runtime.allocator.node_ip)},
                            content_type="application/strategic-merge-patch+json",
                        )
                except client.ApiException as error:
                    log.warning("heartbeat of %s: %s", name, error.reason)

    def _on_pod(self, runtime: NodeRuntime, kind: str, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            for gone in [u for u, r in self.runners.items() if r.done]:
                runtime_of = self.nodes.get(str(self.runners[gone].pod["spec"].get("nodeName")))
                if runtime_of is not None:
                    runtime_of.allocator.give_back(self.runners[gone].ip)
                del self.runners[gone]
            runner = self.runners.get(uid)
            if runner is not None and kind == "MODIFIED":
                runner.server_saw(pod)
            if kind == "DELETED":
                if runner is not None:
                    runner.kill()
                return
            if meta.get("deletionTimestamp"):
                if runner is not None:
                    runner.terminate(float(meta.get("deletionGracePeriodSeconds", 30)))
                else:  # never started here: nothing to stop
                    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                    try:
                        request(self.api, "DELETE", path, {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                    except client.ApiException as error:
                        log.debug("delete %s: %s", path, error.reason)
                return
            if runner is None and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                runner = PodRunner(
                    self.api,
                    self.node,
                    pod,
                    ip=runtime.allocator.take(),
                    host_ip=runtime.allocator.node_ip,
                    root=self.root,
                )
                self.runners[uid] = runner
                log.info("%s/%s: scheduled here, pod IP %s", meta["namespace"], meta["name"], runner.ip)
                runner.start()

    def run(self, stop: threading.Event) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for runtime in self.nodes.values():
            self._register(runtime)
            self._renew(runtime.spec.name)
        threading.Thread(target=self._heartbeat, args=(stop,), daemon=True).start()
        for name, runtime in self.nodes.items():
            runtime.informer = Informer(
                self.api,
                PODS,
                functools.partial(self._on_pod, runtime),
                field_selector=f"spec.nodeName={name}",
            ).start()
        stop.wait()
        log.info("stopping: every pod's processes get SIGTERM")
        with self._lock:
            runners = list(self.runners.values())
        for runner in runners:
            runner.terminate(5)
        for runner in runners:
            runner.thread.join(timeout=15)
