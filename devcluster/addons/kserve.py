"""KServe's controller manager in the local control plane: built from the Go module proxy (see
`versions.py`), run as a process in Standard (raw Deployment) mode, with its webhooks served on
loopback and registered by URL. Its CRDs, the `inferenceservice-config` ConfigMap, its webhook
configurations and the `kserve-torchserve` runtime all come from the same module version's
`config/`, changed only where a process on 127.0.0.1 needs it (URLs instead of Services, the
devcluster CA, Standard as the default deployment mode, images of the runtime resolved as
KServe's kustomization resolves them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from devcluster.build.versions import KSERVE_MODULE, KSERVE_VERSION

NAMESPACE = "kserve"
CONFIG_MAP = "inferenceservice-config"
TORCHSERVE_IMAGE = "pytorch/torchserve-kfs:0.9.0"  # config/runtimes/kustomization.yaml at this version


def module_dir() -> Path:
    """KServe's module source, as the Go module cache holds it (downloaded by the build)."""
    from devcluster.build.go import module_source

    return module_source(KSERVE_MODULE, KSERVE_VERSION, "kserve")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def crds() -> list[dict[str, Any]]:
    """Every CRD of the full install (InferenceService, ServingRuntime, LLMInferenceService, ...)."""
    root = module_dir() / "config" / "crd" / "full"
    docs = [d for path in sorted(root.rglob("*.yaml")) for d in _docs(path)]
    # Kustomize patches in the same folders are partial CRDs (a conversion webhook for the
    # LLMInferenceService Service in a real install): only whole CRDs are applied.
    return [d for d in docs if d.get("kind") == "CustomResourceDefinition" and "group" in d.get("spec", {})]


CA_BUNDLE_CONFIG_MAP = "devcluster-ca-bundle"


def config_map(
    ingress_class: str, storage_initializer_image: str, ingress_domain: str = "example.com"
) -> dict[str, Any]:
    """KServe's configuration: Standard mode by default, its Ingresses for `ingress_class`, its
    storage initializer from `storage_initializer_image` trusting the cluster's CA
    (`ca_bundle_config_map`, which KServe copies into each InferenceService's namespace)."""
    doc = _docs(module_dir() / "config" / "configmap" / "inferenceservice.yaml")[0]
    data = dict(doc["data"])
    storage = json.loads(data["storageInitializer"])
    storage["image"] = storage_initializer_image
    storage["caBundleConfigMapName"] = CA_BUNDLE_CONFIG_MAP
    data["storageInitializer"] = json.dumps(storage)
    data["deploy"] = json.dumps({"defaultDeploymentMode": "Standard"})
    ingress = json.loads(data["ingress"])
    ingress["ingressDomain"] = ingress_domain
    ingress["ingressClassName"] = ingress_class  # the devcluster's ingress controller routes KServe's Ingresses
    data["ingress"] = json.dumps(ingress)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
        "data": data,
    }


def ca_bundle_config_map(ca_pem: str) -> dict[str, Any]:
    """The bundle KServe mounts into storage initializers (`cabundle.crt`, KServe's file name)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CA_BUNDLE_CONFIG_MAP, "namespace": NAMESPACE},
        "data": {"cabundle.crt": ca_pem},
    }


def webhook_configurations(port: int, ca_bundle: str) -> list[dict[str, Any]]:
    """KServe's webhook configurations, pointing at the manager on 127.0.0.1:`port`."""
    out = []
    for doc in _docs(module_dir() / "config" / "webhook" / "manifests.yaml"):
        doc["metadata"].pop("creationTimestamp", None)
        for webhook in doc["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
        out.append(doc)
    return out


def torchserve_runtime() -> dict[str, Any]:
    doc = _docs(module_dir() / "config" / "runtimes" / "kserve-torchserve.yaml")[0]
    for container in doc["spec"]["containers"]:
        if container["image"].startswith("kserve-torchserve:"):
            container["image"] = TORCHSERVE_IMAGE
    return doc


def write_serving_certs(tmp_dir: Path, cert: Path, key: Path) -> None:
    """controller-runtime's webhook server reads $TMPDIR/k8s-webhook-server/serving-certs."""
    target = tmp_dir / "k8s-webhook-server" / "serving-certs"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cert, target / "tls.crt")
    shutil.copyfile(key, target / "tls.key")


def manager_argv(binary: Path, metrics_port: int, probe_port: int, webhook_port: int) -> list[str]:
    return [
        str(binary),
        f"--metrics-addr=127.0.0.1:{metrics_port}",
        f"--health-probe-addr=127.0.0.1:{probe_port}",
        f"--webhook-port={webhook_port}",
        "--leader-elect=false",
    ]
