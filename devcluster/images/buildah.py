"""buildah, as `make images` drives it: its own image store under the cache (overlay driver,
chroot isolation: no daemon, no user namespaces), so builds never touch a system store."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devcluster.build import debian
from devcluster.build.versions import cache_root

DEBIAN_PACKAGES = ("buildah", "mmdebstrap")  # what `make images` needs from Debian's archive


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    debian.install(DEBIAN_PACKAGES)


@dataclass(frozen=True)
class Buildah:
    root: Path  # image store (layers, images)
    runroot: Path  # run state (locks, mounts)
    driver: str = "overlay"

    @classmethod
    def default(cls) -> Buildah:
        base = cache_root() / "images"
        return cls(root=base / "storage", runroot=base / "run")

    def argv(self, *args: str) -> list[str]:
        return ["buildah", f"--root={self.root}", f"--runroot={self.runroot}", f"--storage-driver={self.driver}", *args]

    def run(self, *args: str, capture: bool = True) -> str:
        result = subprocess.run(self.argv(*args), check=False, capture_output=capture, text=True)
        if result.returncode != 0:
            detail = (result.stderr or "").strip()[-4000:] if capture else ""
            raise RuntimeError(f"buildah {' '.join(args[:2])} failed (exit {result.returncode})\n{detail}")
        return (result.stdout or "").strip()

    def image_id(self, reference: str) -> str | None:
        """The local image's id, None when the store does not hold `reference`."""
        result = subprocess.run(
            self.argv("inspect", "--type=image", "--format={{.FromImageID}}", reference),
            check=False,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip() if result.returncode == 0 else None
