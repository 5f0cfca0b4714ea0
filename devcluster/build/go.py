"""Builds the control-plane binaries from the Go module proxy into a versioned cache folder.

Each wrapper module under `gomod/` pins one upstream module (Kubernetes' staging modules by
`replace`, see `pin_kubernetes.py`); Go's own module and build caches make rebuilds cheap.
Two components build at once: one `go build` alone leaves a core idle while it downloads
modules and while it links (single-threaded), which on a cold 2-core machine is a large part of
the time.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devcluster.build import debian
from devcluster.build.versions import BINARIES, COMPONENTS, GOMOD_DIR, KWOK_VERSION, Component, bin_dir, cache_dir

KWOK_STAGE_FILES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def go_binary() -> str:
    """`go` from PATH, else the standard install location (CI's PATH may not name it)."""
    found = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if Path(p).exists()), None)
    if found is None:
        raise SystemExit("go is not installed: the control plane is built from the Go module proxy")
    return found


def _go_env(name: str) -> str:
    return subprocess.run([go_binary(), "env", name], check=True, capture_output=True, text=True).stdout.strip()


# The binaries are stripped (`-s -w`), so the compiler need not write the debug information
# either: 12 % less compile time and a fifth less build cache (helm, cold, 2 cores: 242 s of CPU
# against 275 s; 564 MB of cache against 716 MB).
NO_DWARF = "-gcflags=all=-dwarf=false"


def _build_component(component: Component, out_dir: Path) -> None:
    module_dir = GOMOD_DIR / component.module_dir
    ldflags = " ".join(("-s", "-w", *component.version_ldflags))
    for name, package in component.binaries().items():
        if (out_dir / name).exists():
            continue
        _log(f"building {name} {component.version} from {package}")
        started = time.monotonic()
        tmp = out_dir / f".{name}.tmp"
        tags = ["-tags", ",".join(component.build_tags)] if component.build_tags else []
        subprocess.run(
            [go_binary(), "build", "-mod=readonly", *tags, NO_DWARF, "-ldflags", ldflags, "-o", str(tmp), package],
            cwd=module_dir,
            check=True,
            env={**os.environ, "CGO_ENABLED": "1"} if component.cgo_packages else None,
        )
        tmp.rename(out_dir / name)
        _log(f"built {name} in {time.monotonic() - started:.0f}s")


def module_source(module: str, version: str, wrapper: str) -> Path:
    """An upstream module's source as the Go module cache holds it (its CRDs and configs live
    there), downloaded through the wrapper module `gomod/<wrapper>` when the cache lacks it."""
    path = Path(_go_env("GOMODCACHE")) / f"{module}@{version}"
    if not path.exists():
        subprocess.run([go_binary(), "mod", "download", f"{module}@{version}"], cwd=GOMOD_DIR / wrapper, check=True)
    return path


def kwok_stages_file() -> Path:
    return cache_dir() / "kwok-stages.yaml"


def _write_kwok_stages() -> None:
    """KWOK's binary has no built-in stages; its module ships the standard ones as YAML."""
    target = kwok_stages_file()
    if target.exists():
        return
    module = module_source("sigs.k8s.io/kwok", KWOK_VERSION, "kwok")
    docs = [(module / rel).read_text() for rel in KWOK_STAGE_FILES]
    target.write_text("\n---\n".join(doc.strip() for doc in docs) + "\n")


# Debian 12's own archive, for a machine whose apt cannot download (no package lists, no root).
NGINX_DEB = (
    "http://deb.debian.org/debian/pool/main/n/nginx/nginx_1.22.1-9+deb12u9_amd64.deb",
    "4e7b52f8b31f26d77ffb5c427c41e36223e81b047242ecfa8dc1d7f939734885",
)


def _download_nginx_deb(folder: Path) -> Path:
    """Debian's nginx package: apt's current one, else the pinned one from the archive (checked)."""
    if (
        subprocess.run(["apt-get", "download", "-q", "nginx"], cwd=folder, capture_output=True, check=False).returncode
        == 0
    ):
        return next(folder.glob("nginx_*.deb"))
    url, sha256 = NGINX_DEB
    _log(f"apt-get download nginx failed; fetching {url}")
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{url}: unexpected sha256")
    target = folder / url.rsplit("/", 1)[1]
    target.write_bytes(data)
    return target


def nginx_binary() -> Path:
    """nginx from Debian's package (what the devcluster's ingress controller drives), unpacked
    into the cache without installing it: no service starts, nothing lands in /etc."""
    found = sorted(cache_dir().glob("nginx-*/usr/sbin/nginx"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory() as tmp:
        package = _download_nginx_deb(Path(tmp))
        version = package.name.split("_")[1]
        target = cache_dir() / f"nginx-{version}"
        subprocess.run(["dpkg-deb", "-x", str(package), str(target)], check=True)
    _log(f"unpacked nginx {version} from Debian's package into {target}")
    return target / "usr" / "sbin" / "nginx"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not (bin_dir() / name).exists()]


BUILD_WORKERS = 2
# Cold build minutes on 2 cores (2026-12-02), so the longest start first and the short ones fill in.
_COLD_MINUTES = {"kubernetes": 10, "keda": 8.5, "prometheus": 6, "kserve": 3, "kwok": 2, "helm": 2}


def build_all() -> Path:
    """Builds whatever is missing; returns the folder with the binaries. One build at a time per
    cache: a second `devcluster build` (`make manifests` needs helm) waits for the first, then
    finds the binaries there, instead of building the same ones into the same files."""
    out_dir = bin_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    go_binary()
    with (out_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = sorted(
            (name for name, c in COMPONENTS.items() if any(not (out_dir / n).exists() for n in c.binaries())),
            key=lambda name: -_COLD_MINUTES.get(name, 1),  # longest first
        )
        for name in missing:  # apt takes one install at a time: before the builds start
            debian.install(COMPONENTS[name].cgo_packages)
        with ThreadPoolExecutor(max_workers=BUILD_WORKERS, thread_name_prefix="go-build") as pool:
            for done in [pool.submit(_build_component, COMPONENTS[name], out_dir) for name in missing]:
                done.result()  # the first failure stops the build with its error
        _write_kwok_stages()
        nginx_binary()
    return out_dir
