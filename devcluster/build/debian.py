"""Debian's packages the dev cluster needs on the machine (buildah, runc's libseccomp, the CNI
plugins), installed with apt when missing: these machines run as root and reach Debian's
archive."""

from __future__ import annotations

import fcntl
import subprocess

from devcluster.build.versions import cache_root


def missing(packages: tuple[str, ...]) -> list[str]:
    return [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode]


def install(packages: tuple[str, ...]) -> None:
    """Installs whichever of `packages` is missing (refreshing apt's lists once if needed). One
    install at a time: `make test` builds the Go binaries and the images at once, and each may
    need a package (apt fails at once on a held lock instead of waiting)."""
    if not missing(packages):
        return
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / ".apt.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = missing(packages)
        if not wanted:
            return
        command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted]
        if subprocess.run(command, check=False, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
            subprocess.run(command, check=True)
