"""Admin kubeconfig with the credentials embedded, so kubectl, helm and KWOK all read it alone."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from devcluster.common.pki import Pki

CONTEXT = "recmodel-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render_kubeconfig(server: str, pki: Pki, user: tuple[str, Path, Path] | None = None) -> dict[str, Any]:
    """The admin's kubeconfig, or `user`'s: (name, client certificate, key), e.g. a kubelet's."""
    name, cert, key = user or ("recmodel-admin", pki.admin_cert, pki.admin_key)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}}],
        "users": [{"name": name, "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": name}}],
        "current-context": CONTEXT,
    }


def write_kubeconfig(path: Path, server: str, pki: Pki, user: tuple[str, Path, Path] | None = None) -> None:
    path.write_text(yaml.safe_dump(render_kubeconfig(server, pki, user), sort_keys=False))
    path.chmod(0o600)
