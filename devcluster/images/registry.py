"""The local OCI registry: crane's (`crane registry serve`), on loopback, blobs on disk under the
cache. `make images` pushes to it and the nodes pull from it by tag, as from any registry.

crane keeps manifests in memory, so a restarted registry has lost its tags (not its blobs):
`make images` pushes every time, which re-sends only the manifests of what it already holds.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from devcluster.build.versions import CRANE_VERSION, bin_dir, cache_root

DEFAULT_ADDRESS = "127.0.0.1:5001"


def address() -> str:
    """host:port of the registry (`RECMODEL_REGISTRY`, loopback by default)."""
    return os.environ.get("RECMODEL_REGISTRY", DEFAULT_ADDRESS)


def folder() -> Path:
    return cache_root() / "registry"


def serve_argv(crane: Path, listen: str, disk: Path) -> list[str]:
    return [str(crane), "registry", "serve", f"--address={listen}", f"--disk={disk}"]


def is_serving(listen: str | None = None) -> bool:
    try:
        with urllib.request.urlopen(f"http://{listen or address()}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def ensure_running(timeout: float = 20) -> str:
    """Starts the registry unless one answers at `address()`; returns that address."""
    listen = address()
    if is_serving(listen):
        return listen
    root = folder()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    crane = bin_dir() / f"crane-{CRANE_VERSION}"
    if not crane.exists():
        raise RuntimeError(f"{crane} is missing: run `make cluster-build` first")
    with (root / "registry.log").open("ab") as log:
        process = subprocess.Popen(
            serve_argv(crane, listen, root / "blobs"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `make images`, like the cluster's processes
        )
    (root / "registry.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_serving(listen):
            return listen
        if process.poll() is not None:
            break
        time.sleep(0.2)
    tail = (root / "registry.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the local registry did not start on {listen}:\n{tail}")
