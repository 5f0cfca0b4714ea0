"""The pod sandbox ("pause") image that holds every pod's namespaces. Its usual home,
registry.k8s.io, is not reachable here, so it is built the way Kubernetes builds it: its own
`build/pause/linux/pause.c` (from the Kubernetes module the cluster already builds), compiled
static, alone in an image, pushed with crane (no buildah needed to start a cluster)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from devcluster.build.go import module_source
from devcluster.build.versions import CRANE_VERSION, KUBERNETES_VERSION, bin_dir

PAUSE_VERSION = "3.10.2"  # kubeadm's constants.PauseVersion at the cluster's Kubernetes version


def reference(registry: str) -> str:
    return f"{registry}/pause:{PAUSE_VERSION}"


def _crane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir() / f"crane-{CRANE_VERSION}"), *args], check=False, capture_output=True, text=True
    )


def ensure(registry: str) -> str:
    """Pushes the image unless the registry holds it; returns what containerd pulls."""
    target = reference(registry)
    if _crane("digest", target).returncode == 0:
        return target
    source = module_source("k8s.io/kubernetes", KUBERNETES_VERSION, "kubernetes") / "build/pause/linux/pause.c"
    with tempfile.TemporaryDirectory(prefix="recmodel-pause-") as tmp:
        binary = Path(tmp) / "pause"
        subprocess.run(
            ["gcc", "-Os", "-static", f"-DVERSION=v{PAUSE_VERSION}", "-o", str(binary), str(source)], check=True
        )
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w") as tar:
            info = tar.gettarinfo(str(binary), arcname="pause")
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o755, 0, 0, "", ""
            tar.addfile(info, io.BytesIO(binary.read_bytes()))
        for args in (
            ("append", f"--new_layer={layer}", f"--new_tag={target}", "--platform=linux/amd64"),
            ("mutate", target, "--entrypoint=/pause", "--user=65535:65535", f"--tag={target}"),
        ):
            done = _crane(*args)
            if done.returncode != 0:
                raise RuntimeError(f"crane {args[0]} {target} failed: {done.stderr.strip()}")
    return target
