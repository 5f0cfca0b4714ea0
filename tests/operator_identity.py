"""A kubeconfig that acts as the chart's ServiceAccount, so the operator runs with exactly
the RBAC the chart grants (not the admin's)."""

from __future__ import annotations

from pathlib import Path

import yaml

from devcluster.fixtures import Tools


def service_account_kubeconfig(tools: Tools, namespace: str, service_account: str, out: Path) -> Path:
    token = tools.kubectl_run("create", "token", service_account, "-n", namespace, "--duration=2h").stdout.strip()
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
