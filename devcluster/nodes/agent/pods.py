"""One pod on a process node, from its first status to its removal (a thread per pod)."""

from __future__ import annotations

import base64
import datetime
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.common.informer import request
from devcluster.common.podnet import loopback_twin
from devcluster.nodes.agent.launch import Launch, Node, NotRunnable, launch
from devcluster.nodes.agent.probes import Prober

log = logging.getLogger("devcluster.nodes.agent")

Obj = dict[str, Any]
TICK = 0.2
MAX_BACKOFF = 20.0


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    spec: Obj
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: str = ""
    started: bool = False  # the startup probe passed (or there is none)
    ready: bool = False
    waiting: tuple[str, str] = ("ContainerCreating", "")
    last_state: Obj = field(default_factory=dict)
    next_start: float = 0.0
    probers: dict[str, Prober] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def backoff(self) -> float:
        """Seconds before the next start: doubling with each restart, at most MAX_BACKOFF."""
        return min(MAX_BACKOFF, 2.0 ** min(self.restarts, 5))

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: int(p["containerPort"]) for p in self.spec.get("ports", []) if p.get("name")}

    def status(self) -> Obj:
        if self.process is not None and self.process.poll() is None:
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.last_state and self.process is not None:
            state = self.last_state
        else:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "started": self.started and self.process is not None and self.process.poll() is None,
            "restartCount": self.restarts,
            "state": state,
        }
        if self.process is not None:
            out["containerID"] = f"process://{self.process.pid}"
        if self.last_state and state is not self.last_state:
            out["lastState"] = self.last_state
        return out


class PodRunner:
    def __init__(self, api: client.ApiClient, node: Node, pod: Obj, *, ip: str, host_ip: str, root: Path) -> None:
        self.api = api
        self.node = node
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.ip, self.host_ip = ip, host_ip
        self.address = loopback_twin(ip) or ip
        self.dir = root / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.started_at = now_rfc3339()
        self.initialized = False
        self.init = [Container(c) for c in pod["spec"].get("initContainers", [])]
        self.main = [Container(c) for c in pod["spec"]["containers"]]
        self.transitions: dict[str, tuple[bool, str]] = {}
        self.grace: float | None = None  # set when the pod is being deleted
        self._killed = threading.Event()
        self._sent = ""
        self._sent_conditions: dict[str, str] = {}
        self.thread = threading.Thread(target=self._run, name=f"pod {self.namespace}/{self.name}", daemon=True)

    # ---- what the agent calls ----------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def terminate(self, grace_seconds: float) -> None:
        if self.grace is None:
            log.info("%s/%s: deleting, grace %.0fs", self.namespace, self.name, grace_seconds)
            self.grace = grace_seconds

    def kill(self) -> None:
        """The object is gone (force-deleted): stop at once."""
        self.grace = 0.0
        self._killed.set()

    # ---- status ------------------------------------------------------------------------

    def _condition(self, kind: str, value: bool) -> Obj:
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != value:
            self.transitions[kind] = (value, now_rfc3339())
        return {"type": kind, "status": "True" if value else "False", "lastTransitionTime": self.transitions[kind][1]}

    def _status(self) -> Obj:
        running = any(c.process is not None and c.process.poll() is None for c in self.main)
        ready = self.grace is None and all(c.ready for c in self.main)
        return {
            "phase": "Running" if running else "Pending",
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.started_at,
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition("Initialized", self.initialized),
                self._condition("ContainersReady", ready),
                self._condition("Ready", ready),
            ],
            "initContainerStatuses": [c.status() for c in self.init],
            "containerStatuses": [c.status() for c in self.main],
        }

    def server_saw(self, pod: Obj) -> None:
        """The API server's copy of the pod (from the informer). When someone else changed our
        conditions (the node controller marks pods NotReady when it loses touch with the node),
        the next tick writes ours again, as the kubelet's status manager does."""
        theirs = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        if any(theirs.get(kind) != value for kind, value in self._sent_conditions.items()):
            self._sent = ""

    def _publish(self) -> None:
        status = self._status()
        text = repr(status)
        if text == self._sent:
            return
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        try:
            request(
                self.api,
                "PATCH",
                path,
                {"metadata": {"uid": self.uid}, "status": status},
                content_type="application/strategic-merge-patch+json",
            )
            self._sent = text
            self._sent_conditions = {c["type"]: c["status"] for c in status["conditions"]}
        except client.ApiException as error:
            log.warning("%s/%s: status not written: %s", self.namespace, self.name, error.reason)

    # ---- processes ---------------------------------------------------------------------

    def _launch(self, container: Container, volumes: dict[str, Path]) -> Launch:
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": str(self.pod["spec"].get("nodeName", "")),
            "status.podIP": self.ip,
            "status.hostIP": self.host_ip,
        }
        base = {
            "PATH": f"{self.node.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
        }
        return launch(
            container.spec,
            self.node,
            resolve=self._service_address,
            pod_dir=self.dir,
            volumes=volumes,
            address=self.address,
            fields=fields,
            base_env=base,
        )

    def _service_address(self, service: str, namespace: str) -> str | None:
        """Where a Service listens for this node's pods: its ClusterIP's loopback twin, served by
        the ingress controller's nginx (the devcluster's kube-proxy); None if it does not exist."""
        try:
            found = request(self.api, "GET", f"/api/v1/namespaces/{namespace}/services/{service}")
        except client.ApiException:
            return None
        return loopback_twin(str(found.get("spec", {}).get("clusterIP", "")))

    def _spawn(self, container: Container, volumes: dict[str, Path]) -> None:
        try:
            how = self._launch(container, volumes)
        except NotRunnable as error:
            container.waiting = ("CreateContainerError", str(error))
            container.next_start = time.monotonic() + MAX_BACKOFF
            log.warning("%s/%s %s: %s", self.namespace, self.name, container.name, error)
            return
        logfile = (self.dir / f"{container.name}.log").open("ab")
        container.process = subprocess.Popen(
            how.argv, env=how.env, cwd=how.cwd, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        logfile.close()
        container.started_at = now_rfc3339()
        container.last_state = {} if container.restarts == 0 else container.last_state
        now = time.monotonic()
        container.probers = {
            kind: Prober(container.spec[kind], passed=(kind == "livenessProbe"))
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in container.spec
        }
        for prober in container.probers.values():
            prober.start(now)
        container.started = "startupProbe" not in container.probers
        container.ready = False
        log.info(
            "%s/%s %s: started pid %d on %s",
            self.namespace,
            self.name,
            container.name,
            container.process.pid,
            self.address,
        )

    def _exited(self, container: Container, code: int, reason: str = "") -> None:
        container.last_state = {
            "terminated": {
                "exitCode": code,
                "reason": reason or ("Completed" if code == 0 else "Error"),
                "startedAt": container.started_at,
                "finishedAt": now_rfc3339(),
            }
        }
        container.ready = False
        container.started = False

    def _stop(self, container: Container, grace: float) -> None:
        process = container.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _restart(self, container: Container, why: str) -> None:
        log.info("%s/%s %s: restarting (%s)", self.namespace, self.name, container.name, why)
        self._stop(container, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))
        self._exited(container, container.process.returncode if container.process else -1, why)
        container.restarts += 1
        container.next_start = time.monotonic() + container.backoff
        container.process = None

    def _probe(self, container: Container, now: float) -> None:
        ports = container.ports
        startup = container.probers.get("startupProbe")
        if not container.started and startup is not None:
            verdict = startup.tick(now, self.address, ports)
            if verdict:
                container.started = True
                if (readiness := container.probers.get("readinessProbe")) is not None:
                    readiness.due = now
            elif verdict is False:
                self._restart(container, "StartupProbeFailed")
            return
        if (readiness := container.probers.get("readinessProbe")) is not None:
            verdict = readiness.tick(now, self.address, ports)
            if verdict is not None:
                container.ready = verdict
        else:
            container.ready = True
        if (liveness := container.probers.get("livenessProbe")) is not None and liveness.tick(
            now, self.address, ports
        ) is False:
            self._restart(container, "LivenessProbeFailed")

    # ---- the pod's life ----------------------------------------------------------------

    def _volumes(self) -> dict[str, Path]:
        """Each volume as a folder: emptyDirs empty; configMaps, secrets and projected volumes
        (the service-account token KServe's pods mount) written from the API as a kubelet does."""
        out = {}
        for volume in self.pod["spec"].get("volumes", []):
            folder = self.dir / "volumes" / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            sources = volume.get("projected", {}).get("sources", [])
            for kind in ("configMap", "secret"):
                if kind in volume:
                    sources = [
                        {kind: {**volume[kind], "name": volume[kind].get("name") or volume[kind].get("secretName")}}
                    ]
            for source in sources:
                self._project(source, folder)
            if "emptyDir" in volume or sources:
                out[volume["name"]] = folder
        return out

    def _project(self, source: Obj, folder: Path) -> None:
        namespace = self.namespace
        try:
            if "serviceAccountToken" in source:
                account = self.pod["spec"].get("serviceAccountName", "default")
                path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
                spec = {
                    "audiences": [a for a in [source["serviceAccountToken"].get("audience")] if a],
                    "expirationSeconds": int(source["serviceAccountToken"].get("expirationSeconds", 3607)),
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": self.name, "uid": self.uid},
                }
                token = request(
                    self.api,
                    "POST",
                    path,
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
                )
                (folder / source["serviceAccountToken"]["path"]).write_text(token["status"]["token"])
            for kind, plural in (("configMap", "configmaps"), ("secret", "secrets")):
                if kind in source:
                    found = request(self.api, "GET", f"/api/v1/namespaces/{namespace}/{plural}/{source[kind]['name']}")
                    data = found.get("data") or {}
                    if kind == "secret":
                        data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
                    items = source[kind].get("items") or [{"key": k, "path": k} for k in data]
                    for item in items:
                        if item["key"] in data:
                            (folder / item["path"]).write_text(data[item["key"]])
            if "downwardAPI" in source:
                for item in source["downwardAPI"].get("items", []):
                    if item.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                        (folder / item["path"]).write_text(namespace)
        except client.ApiException as error:
            if not any(s.get("optional") for s in source.values() if isinstance(s, dict)):
                log.warning("%s/%s: volume source %s: %s", namespace, self.name, list(source), error.reason)

    def _run_init(self, volumes: dict[str, Path]) -> bool:
        for container in self.init:
            while self.grace is None:
                self._spawn(container, volumes)
                self._publish()
                if container.process is None:  # not runnable here: say so, try again later
                    time.sleep(5)
                    continue
                while container.process.poll() is None and self.grace is None:
                    time.sleep(TICK)
                if self.grace is not None:
                    self._stop(container, 0)
                    return False
                code = container.process.returncode
                self._exited(container, code)
                if code == 0:
                    break
                container.restarts += 1
                self._publish()
                time.sleep(container.backoff)
        self.initialized = self.grace is None
        return self.initialized

    def _run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._publish()
            volumes = self._volumes()
            if self._run_init(volumes):
                self._serve(volumes)
        except Exception:
            log.exception("%s/%s: the agent failed running this pod", self.namespace, self.name)
        finally:
            self._finish()

    def _serve(self, volumes: dict[str, Path]) -> None:
        for container in self.main:
            self._spawn(container, volumes)
        self._publish()
        while self.grace is None:
            now = time.monotonic()
            for container in self.main:
                if container.process is None:
                    if now >= container.next_start:
                        self._spawn(container, volumes)
                    continue
                code = container.process.poll()
                if code is not None:
                    self._exited(container, code)
                    container.restarts += 1
                    container.next_start = now + container.backoff
                    container.process = None
                    container.waiting = ("CrashLoopBackOff", f"exited with {code}")
                    log.warning("%s/%s %s: exited with %d", self.namespace, self.name, container.name, code)
                    continue
                self._probe(container, now)
            self._publish()
            time.sleep(TICK)

    def _finish(self) -> None:
        """SIGTERM, the grace period, SIGKILL; the final status; then the object goes."""
        grace = 0.0 if self._killed.is_set() else (self.grace or 0.0)
        self._publish()  # not Ready any more
        threads = [threading.Thread(target=self._stop, args=(c, grace)) for c in [*self.init, *self.main]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.info("%s/%s: stopped", self.namespace, self.name)
        if not self._killed.is_set():
            path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
            try:
                request(self.api, "DELETE", path, {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
            except client.ApiException as error:
                if error.status not in (404, 409):
                    log.warning("%s/%s: not deleted: %s", self.namespace, self.name, error.reason)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()
