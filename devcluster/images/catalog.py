"""What `make images` builds (pure: names, Dockerfiles, tags and content keys).

An image's content key hashes everything its build reads: the Dockerfile, the files its `COPY`
lines bring in (as the build context holds them: tracked or untracked-but-not-ignored files),
the base image's id and the build arguments. The same key means the same build, so it is
skipped; the image is also tagged with the project's version, which is what pods pull.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devcluster.build.versions import REPO_ROOT
from recmodel_operator.render.context import DEFAULT_SERVER_IMAGE

# The release the operator's defaults name (`ghcr.io/recmodel/recmodel-server:<version>`).
VERSION = DEFAULT_SERVER_IMAGE.rsplit(":", 1)[1]
PUBLIC_REPOSITORY = DEFAULT_SERVER_IMAGE.rsplit("/", 1)[0]  # ghcr.io/recmodel
KSERVE_STORAGE_VERSION = "0.21.0"  # the kserve-storage release beside our kserve SDK (constraints.txt)


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str  # relative to the repository root, which is the build context
    version: str = VERSION
    build_args: tuple[tuple[str, str], ...] = ()
    owner: str = "recmodel"  # the repository's first part, as on a public registry

    def reference(self, registry: str) -> str:
        return f"{registry}/{self.owner}/{self.name}:{self.version}"

    def content_reference(self, registry: str, key: str) -> str:
        return f"{registry}/{self.owner}/{self.name}:content-{key}"


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("recmodel-operator", "operator/Dockerfile"),
    ImageSpec("recmodel-server", "model_handlers/Dockerfile"),
    # KServe's storage-initializer (its python/storage-initializer.Dockerfile is the reference),
    # so the init container KServe injects into a predictor really downloads the model.
    ImageSpec(
        "storage-initializer",
        "devcluster/images/storage-initializer/Dockerfile",
        version=KSERVE_STORAGE_VERSION,
        build_args=(("KSERVE_STORAGE_VERSION", KSERVE_STORAGE_VERSION),),
        owner="kserve",
    ),
)


def copy_sources(dockerfile: str) -> list[str]:
    """The context paths the Dockerfile's `COPY`/`ADD` lines read (not `--from` stages)."""
    sources: list[str] = []
    for line in _instructions(dockerfile):
        words = shlex.split(line)
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        sources.extend(args[:-1])
    return sources


def _instructions(dockerfile: str) -> Iterable[str]:
    """Instructions with their line continuations joined, comments dropped."""
    current = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""
    if current:
        yield current


def context_files(paths: list[str], root: Path = REPO_ROOT) -> list[str]:
    """The files under `paths` that the build context carries (git's view: tracked, plus
    untracked files that are not ignored; `.dockerignore` leaves out the same build outputs)."""
    if not paths:
        return []
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in out.split("\0") if name and (root / name).is_file()})


def content_key(spec: ImageSpec, base_id: str, root: Path = REPO_ROOT) -> str:
    dockerfile = (root / spec.dockerfile).read_text()
    digest = hashlib.sha256()
    for part in (spec.dockerfile, dockerfile, base_id, repr(spec.build_args)):
        digest.update(part.encode() + b"\0")
    for name in context_files(copy_sources(dockerfile), root):
        digest.update(name.encode() + b"\0" + hashlib.sha256((root / name).read_bytes()).digest())
    return digest.hexdigest()[:16]


def image(name: str) -> ImageSpec:
    """The catalog's image called `name`."""
    (found,) = [spec for spec in IMAGES if spec.name == name]
    return found
