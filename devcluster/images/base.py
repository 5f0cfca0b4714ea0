"""The base image, made from Debian's packages (no public image registry is reachable here):
Debian bookworm's minimal system with its Python 3.11 and pip, shaped like `python:3.11-slim`
where our Dockerfiles rely on it (`python` and `pip` on PATH, pip free to install), and
trusting the certificate authorities this machine trusts (its package registries sit behind
them). Cached by what goes in: the suite, the packages and those certificates."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from devcluster.images.buildah import Buildah

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates", "procps")
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
NAME = "localhost/recmodel-base"

# Run by mmdebstrap on the finished tree ("$1"): this machine's CAs, pip allowed to install into
# the image's Python (PEP 668 guards a system's Python; an image's is its own), and the names
# python:3.11-slim has.
HOOKS = (
    f'if ls {LOCAL_CAS}/*.crt >/dev/null 2>&1; then cp {LOCAL_CAS}/*.crt "$1{LOCAL_CAS}/"; fi',
    'chroot "$1" update-ca-certificates --fresh >/dev/null',
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
    'ln -sf /usr/bin/python3 "$1/usr/local/bin/python"',
    'ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"',
)
CONFIG = (
    "--env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--env=LANG=C.UTF-8",
    "--cmd=python3",
    f"--label=org.opencontainers.image.description=Debian {SUITE} with Python 3, built by devcluster",
)


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def key() -> str:
    digest = hashlib.sha256()
    for part in (SUITE, MIRROR, *PACKAGES, *HOOKS, *CONFIG):
        digest.update(part.encode() + b"\0")
    for cert in sorted(LOCAL_CAS.glob("*.crt")):
        digest.update(cert.read_bytes())
    return digest.hexdigest()[:16]


def mmdebstrap_argv(target: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        *(f"--customize-hook={hook}" for hook in HOOKS),
        "--format=tar",
        "--quiet",
        SUITE,
        str(target),
        MIRROR,
    ]


def ensure(buildah: Buildah) -> str:
    """The base image's reference, built when the store lacks this key."""
    reference = f"{NAME}:{SUITE}-{key()}"
    if buildah.image_id(reference):
        return reference
    _log(f"building the base image {reference} with mmdebstrap ({SUITE}: {', '.join(PACKAGES)})")
    with tempfile.TemporaryDirectory(prefix="recmodel-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(mmdebstrap_argv(tarball), check=True)
        container = buildah.run("from", "scratch")
        try:
            buildah.run("add", container, str(tarball), "/")
            buildah.run("config", *CONFIG, container)
            buildah.run("commit", "--quiet", container, reference)
        finally:
            buildah.run("rm", container)
    return reference
