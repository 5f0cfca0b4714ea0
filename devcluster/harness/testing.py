"""Support shared by the tests, the demo and the benchmarks: the real operator as a process
against the local control plane, under an identity of its own with the chart's RBAC, and
the API server's own count of that identity's requests."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devcluster.addons.prometheus import Target, register_targets
from devcluster.build.versions import KUBERNETES_VERSION, REPO_ROOT
from devcluster.common.ports import free_ports
from devcluster.harness.fixtures import Tools
from devcluster.nodes.specs import REAL_PLACEMENT

# The toleration the NVIDIA GPU operator's taint needs, written out here rather than taken from
# the renderer, so the tests check what the operator renders against what the cluster expects.
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

PULL_TIMEOUT = 600  # seconds for a real node's pod to be Ready: a cold node pulls the server image (gigabytes) first
THIRD_PARTY_CRDS_DIR = REPO_ROOT / "tests" / "third_party" / "crds"  # copied with their source and licence noted there
CHART = REPO_ROOT / "charts" / "recmodel-operator"
# KServe's and KEDA's own CRDs come with their controllers (devcluster installs them from the same
# modules); KEDA's copies here are for a bare cluster that gets KEDA's CRDs without its controller.
KEDA_CRDS = ["keda/keda.sh_scaledobjects.yaml", "keda/keda.sh_triggerauthentications.yaml"]
THIRD_PARTY_CRDS = [
    "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
    "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
    "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
]
OPERATOR_NAMESPACE = "recmodel-test"
OPERATOR_RELEASE = "recmodel-test"  # the chart's RBAC under a release name of its own
FLOW_READS, FLOW_WRITES = "recmodel-operator-reads", "recmodel-operator-writes"
WRITE_VERBS = ["create", "update", "patch", "delete", "deletecollection"]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60,
    interval: float = 0.5,
    what: str = "condition",
    explain: Callable[[], str] | None = None,
) -> Any:
    """Polls `predicate` until it is truthy; on timeout the error carries `explain()`, what the
    cluster looked like then."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    detail = f"\n{explain()}" if explain is not None else ""
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r}){detail}")


def _crds_established(tools: Tools) -> bool:
    result = tools.kubectl_run("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all", check=False)
    return result.returncode == 0


def install_crds(tools: Tools, *, third_party: bool = True) -> None:
    """Our CRD, the Prometheus operator's (its controller does not run here), and KEDA's where
    the cluster does not run KEDA already."""
    paths = [REPO_ROOT / "manifests" / "01-crd.yaml"]
    if third_party:
        paths += [THIRD_PARTY_CRDS_DIR / p for p in THIRD_PARTY_CRDS]
        if tools.kubectl_run("get", "crd", "scaledobjects.keda.sh", check=False).returncode != 0:
            paths += [THIRD_PARTY_CRDS_DIR / p for p in KEDA_CRDS]
    for path in paths:
        tools.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(path))
    # A CRD created a moment ago may have no status yet, which `kubectl wait` reports as an error.
    wait_for(lambda: _crds_established(tools), timeout=90, what="CRDs established")
    # Established is not yet served: the API server answers 429 while its storage initialises.
    wait_for(
        lambda: tools.kubectl_run("get", "recmodels", "-A", check=False).returncode == 0,
        timeout=60,
        what="RecModels served",
    )
    wait_for(
        lambda: _collects_recmodel_children(tools),
        timeout=90,
        interval=0,
        what="the garbage collector watches RecModels",
    )


def _collects_recmodel_children(tools: Tools) -> bool:
    """Whether deleting a RecModel now deletes what it owns. The controller-manager's garbage
    collector finds new CRDs by discovery every 30 s; until then a RecModel's deletion reaches
    its children only through the collector's backed-off rechecks. One probe: a RecModel, a
    ConfigMap it owns, the RecModel deleted, up to 5 s for the ConfigMap to go."""
    name = f"gc-probe-{uuid.uuid4().hex[:6]}"
    owner = json.loads(
        tools.kubectl_run(
            "create", "-n", "default", "-o", "json", "-f", "-", stdin=json.dumps(small_standalone(name))
        ).stdout
    )
    reference = {"apiVersion": owner["apiVersion"], "kind": "RecModel", "name": name, "uid": owner["metadata"]["uid"]}
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [reference]}}
    apply(tools, "default", child)
    tools.kubectl_run("delete", "recmodel", name, "-n", "default", "--wait=false")
    try:
        wait_for(lambda: get_json(tools, "configmap", name, "-n", "default") is None, timeout=5, what="probe collected")
        return True
    except AssertionError:
        tools.kubectl_run("delete", "configmap", name, "-n", "default", "--ignore-not-found")
        return False


def install_recmodel_runtime(tools: Tools) -> None:
    """Our ClusterServingRuntime, as the chart installs it on KServe clusters (through KServe's webhook)."""
    tools.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "manifests" / "kserve"))


def get_json(tools: Tools, *args: str) -> Any:
    result = tools.kubectl_run("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def sample(name: str) -> dict[str, Any]:
    """One of the RecModels in manifests/samples/."""
    return dict(yaml.safe_load((REPO_ROOT / "manifests" / "samples" / name).read_text()))


def small_standalone(name: str) -> dict[str, Any]:
    """The smallest useful RecModel: one standalone replica, no autoscaler (bulk tests, benchmarks)."""
    return {
        "apiVersion": "recmodel.dev/v1alpha1",
        "kind": "RecModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"storageUri": f"s3://models/{name}/v1"},
            "backend": "standalone",
            "resources": {"cpu": "100m", "memory": "256Mi"},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1, "metric": "cpu", "target": 70},
        },
    }


def on_real_nodes(obj: dict[str, Any], image: str, storage_uri: str, host: str | None = None) -> dict[str, Any]:
    """A copy of the RecModel `obj` whose pods the real nodes' kubelets run from `image` (the
    built server image in the local registry), serving `storage_uri` (a `model_claim`, or any
    URI the image fetches), behind an Ingress for `host` if one is given."""
    placed = copy.deepcopy(obj)
    placed["spec"]["image"] = image
    placed["spec"]["model"] = {**placed["spec"].get("model", {}), "storageUri": storage_uri}
    placed["spec"]["placement"] = REAL_PLACEMENT
    if host:
        placed["spec"]["ingress"] = {"enabled": True, "host": host}
    return placed


def ready_pods(tools: Tools, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching `selector` that are Ready and not being deleted."""
    pods = get_json(tools, "pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and (condition(p, "Ready") or {}).get("status") == "True"
    ]


def pod_url(pod: dict[str, Any], port: int = 8080) -> str:
    """Where a real node's pod listens: its pod IP, on the node's bridge on this machine."""
    return f"http://{pod['status']['podIP']}:{port}"


@contextmanager
def in_background(stop: threading.Event, *targets: Callable[[], None]) -> Iterator[None]:
    """Runs each target in a thread for the block's duration; sets `stop` and joins them after."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def apply(tools: Tools, namespace: str, obj: dict[str, Any], check: bool = True) -> Any:
    return tools.kubectl_run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=check)


def namespace_report(tools: Tools, namespace: str) -> str:
    """What a person would look at first when a wait in `namespace` times out."""
    kinds = "recmodels,deployments,replicasets,pods"
    result = tools.kubectl_run("get", kinds, "-n", namespace, "-o", "wide", check=False)
    return result.stdout + result.stderr


def recmodel(tools: Tools, namespace: str, name: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = get_json(tools, "recmodel", name, "-n", namespace)
    return result


def wait_phase(tools: Tools, namespace: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (
                (obj := recmodel(tools, namespace, name)) and (obj.get("status") or {}).get("phase") == phase and obj
            ),
            timeout=timeout,
            what=f"RecModel {name} phase {phase}",
        )
    )


# -- the operator's identity ----------------------------------------------------------------------


def service_account_kubeconfig(tools: Tools, namespace: str, service_account: str, out: Path) -> Path:
    """A kubeconfig that acts as a ServiceAccount (a token from the TokenRequest API)."""
    token = tools.kubectl_run("create", "token", service_account, "-n", namespace, "--duration=4h").stdout.strip()
    admin = yaml.safe_load(tools.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": service_account}}],
        "current-context": "operator",
    }
    out.write_text(yaml.safe_dump(config))
    return out


def _flow_schema(name: str, precedence: int, subject: dict[str, Any], verbs: list[str]) -> dict[str, Any]:
    """API Priority and Fairness classifies every request by identity; its metrics count them by
    FlowSchema, so a FlowSchema per (identity, verbs) counts that identity's requests at the server."""
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": "workload-high"},
            "matchingPrecedence": precedence,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [subject],
                    "resourceRules": [
                        {
                            "verbs": verbs,
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                    "nonResourceRules": [{"verbs": verbs, "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }


def operator_identity(tools: Tools, out: Path) -> Path:
    """The chart's ServiceAccount and RBAC (rendered by helm, applied as they are), FlowSchemas
    that count its requests, and a kubeconfig that acts as it. Idempotent."""
    rendered = tools.helm_run(
        "template",
        OPERATOR_RELEASE,
        str(CHART),
        "-n",
        OPERATOR_NAMESPACE,
        f"--kube-version={KUBERNETES_VERSION}",
        "--show-only=templates/serviceaccount.yaml",
        "--show-only=templates/rbac.yaml",
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    subject = {"kind": "ServiceAccount", "serviceAccount": {"name": account, "namespace": OPERATOR_NAMESPACE}}
    flows = [_flow_schema(FLOW_WRITES, 500, subject, WRITE_VERBS), _flow_schema(FLOW_READS, 501, subject, ["*"])]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    listing = {"apiVersion": "v1", "kind": "List", "items": [namespace, *docs, *flows]}
    tools.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(listing))
    return service_account_kubeconfig(tools, OPERATOR_NAMESPACE, account, out)


_DISPATCHED = re.compile(r"^apiserver_flowcontrol_dispatched_requests_total\{([^}]*)\} ([0-9.e+]+)$")


def wait_until_quiet(tools: Tools, timeout: float = 120) -> None:
    """No namespace still terminating: earlier tests' RecModels no longer give the operator work."""
    wait_for(
        lambda: (
            not [
                n
                for n in get_json(tools, "namespaces")["items"]
                if (n.get("status") or {}).get("phase") == "Terminating"
            ]
        ),
        timeout=timeout,
        interval=1,
        what="no namespace terminating",
    )


def operator_api_requests(tools: Tools) -> dict[str, float]:
    """The API server's own count of the operator's requests so far: reads (watches, lists,
    gets, discovery) and writes (create, update, patch, delete)."""
    text = tools.kubectl_run("get", "--raw", "/metrics").stdout
    counts = {"reads": 0.0, "writes": 0.0}
    for line in text.splitlines():
        match = _DISPATCHED.match(line)
        if not match:
            continue
        if f'flow_schema="{FLOW_READS}"' in match.group(1):
            counts["reads"] += float(match.group(2))
        elif f'flow_schema="{FLOW_WRITES}"' in match.group(1):
            counts["writes"] += float(match.group(2))
    counts["total"] = counts["reads"] + counts["writes"]
    return counts


# -- the operator process ---------------------------------------------------------------------------


class OperatorProcess:
    def __init__(
        self,
        tools: Tools,
        log_path: Path,
        kubeconfig: Path | None = None,
        *,
        resync_seconds: float = 300,
        leader_election: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tools = tools
        self.resync_seconds = resync_seconds
        self.log_path = log_path
        self.kubeconfig = kubeconfig or tools.kubeconfig
        self.leader_election = leader_election
        self.env = env or {}
        self.metrics_port, self.health_port = free_ports(2)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "RECMODEL_RESYNC_SECONDS": str(self.resync_seconds),
            "POD_NAMESPACE": OPERATOR_NAMESPACE,
            # The cluster's Prometheus, where KEDA's queries go (in a cluster: the chart's value).
            **({"RECMODEL_PROMETHEUS_URL": self.tools.prometheus_url} if self.tools.prometheus_url else {}),
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "recmodel-operator"),
                "--metrics-host=127.0.0.1",
                f"--metrics-port={self.metrics_port}",
                f"--health-endpoint=http://127.0.0.1:{self.health_port}/healthz",
                "--leader-election" if self.leader_election else "--no-leader-election",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if self.tools.prometheus_targets is not None:  # scraped as a PodMonitor would
            target = Target(
                f"127.0.0.1:{self.metrics_port}", {"namespace": OPERATOR_NAMESPACE, "component": "operator"}
            )
            register_targets(self.tools.prometheus_targets, self._target_name, [target])
        if wait:
            wait_for(self.healthy, timeout=60, what="operator health endpoint")
            wait_for(self.synced, timeout=90, what="operator caches synced")

    @property
    def _target_name(self) -> str:
        return f"operator-{self.metrics_port}"

    @property
    def identity(self) -> str:
        """What this process writes into the Lease when it leads (the operator's own rule:
        POD_NAME when it is given one, else host and process id)."""
        assert self.process is not None
        return self.env.get("POD_NAME") or f"{socket.gethostname()}-{self.process.pid}"

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as response:
                body: dict[str, Any] = json.loads(response.read()).get("controller") or {}
                return body
        except (OSError, ValueError):
            return {}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def synced(self) -> bool:
        try:
            return "recmodel_operator_caches_synced 1.0" in self.metrics()
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.tools.prometheus_targets is not None:
            (self.tools.prometheus_targets / f"{self._target_name}.json").unlink(missing_ok=True)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease released, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@contextmanager
def running_operator(
    tools: Tools, log_path: Path, kubeconfig: Path | None = None, **options: Any
) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(tools, log_path, kubeconfig, **options)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def inference_service_ready(tools: Tools, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    """Waits for KServe's controller to report the InferenceService Ready, and returns it."""
    return dict(
        wait_for(
            lambda: (
                (isvc := get_json(tools, "inferenceservice", name, "-n", namespace))
                and (condition(isvc, "Ready") or {}).get("status") == "True"
                and isvc
            ),
            timeout=timeout,
            what=f"KServe reports InferenceService {name} Ready",
        )
    )


def model_versions(root: Path, versions: dict[str, Path]) -> Path:
    """A folder holding each package of `versions` under its name (`root/<name>`, hard links
    where the file system allows), for one `model_claim` that serves them all as
    `pvc://<claim>/<name>`; returns `root`."""
    for name, package in versions.items():
        target = root / name
        shutil.rmtree(target, ignore_errors=True)
        try:
            shutil.copytree(package, target, copy_function=os.link)
        except OSError:  # another file system: copy
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(package, target)
    return root


@contextmanager
def model_claim(tools: Tools, namespace: str, model_dir: Path) -> Iterator[str]:
    """A PersistentVolumeClaim bound to a hostPath volume holding the package (this machine is
    the node); yields the claim's name."""
    volume = f"model-{namespace}"
    tools.kubectl_run(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(model_dir), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": "model"},
                },
            }
        ),
    )
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "model"},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    apply(tools, namespace, claim)
    try:
        yield "model"
    finally:
        tools.kubectl_run("delete", "pv", volume, "--wait=false", check=False)
