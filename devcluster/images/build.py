"""`make images`: builds each image of the catalog from its Dockerfile with buildah (skipped when
its content key is already built), then pushes it to the local registry under its version tag
and its content tag."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from devcluster.build.versions import REPO_ROOT
from devcluster.images import base, registry
from devcluster.images.buildah import Buildah, ensure_tools
from devcluster.images.catalog import IMAGES, ImageSpec, content_key


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Built:
    spec: ImageSpec
    reference: str  # what pods pull: <registry>/recmodel/<name>:<version>
    key: str
    build_seconds: float  # 0 when the content key was built already
    push_seconds: float


def local_name(spec: ImageSpec, key: str) -> str:
    return f"localhost/{spec.owner}/{spec.name}:content-{key}"


def bud_argv(spec: ImageSpec, base_reference: str, tag: str) -> list[str]:
    args = [f"--build-arg=BASE={base_reference}", *(f"--build-arg={k}={v}" for k, v in spec.build_args)]
    return ["bud", "--isolation=chroot", "--layers", f"--file={spec.dockerfile}", f"--tag={tag}", *args]


def build_local(buildah: Buildah, spec: ImageSpec, base_reference: str) -> tuple[str, float]:
    """Builds the image into the local store unless its content key is there already; returns
    the key and the seconds spent (0 when it was there)."""
    base_id = buildah.image_id(base_reference) or base_reference
    key = content_key(spec, base_id)
    started = time.monotonic()
    if buildah.image_id(local_name(spec, key)) is None:
        _log(f"building {spec.name} from {spec.dockerfile}")
        buildah.run(*bud_argv(spec, base_reference, local_name(spec, key)), str(REPO_ROOT), capture=False)
    return key, time.monotonic() - started


def build_one(buildah: Buildah, spec: ImageSpec, base_reference: str, to: str) -> Built:
    key, built = build_local(buildah, spec, base_reference)
    started = time.monotonic()
    reference = spec.reference(to)
    for destination in (reference, spec.content_reference(to, key)):
        buildah.run(
            "push",
            "--quiet",
            "--tls-verify=false",
            "--disable-compression",
            local_name(spec, key),
            f"docker://{destination}",
        )
    pushed = time.monotonic() - started
    _log(f"{reference} (content {key}): built in {built:.0f}s, pushed in {pushed:.0f}s")
    return Built(spec, reference, key, built, pushed)


def _chosen(names: list[str] | None) -> list[ImageSpec]:
    return [spec for spec in IMAGES if not names or spec.name in names]


def build_all(names: list[str] | None = None) -> list[Built]:
    """Builds what is missing and pushes every chosen image to the local registry."""
    ensure_tools()
    buildah = Buildah.default()
    to = registry.ensure_running()
    base_reference = base.ensure(buildah)
    return [build_one(buildah, spec, base_reference, to) for spec in _chosen(names)]


def build_only(names: list[str] | None = None) -> list[str]:
    """Builds what is missing into the local store without the registry (whose binary the Go
    build makes): `make test` runs this beside that build, and the tests' push finds it built.
    Returns the local references."""
    ensure_tools()
    buildah = Buildah.default()
    base_reference = base.ensure(buildah)
    return [local_name(spec, build_local(buildah, spec, base_reference)[0]) for spec in _chosen(names)]
