"""The benchmark's models, trained once into the work folder by `recmodel train`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SMALL = ("--rows=100000", "--epochs=2")
LARGE = ("--size=large", "--rows=200000", "--epochs=2")  # 1.02B parameters


def trained(out: Path, flags: tuple[str, ...]) -> Path:
    """`out`, trained with `flags` unless a package is already there."""
    if not (out / "manifest.json").exists():
        command = [sys.executable, "-m", "recmodel_handlers.cli", "train", f"--out={out}", "--name=ranker"]
        subprocess.run([*command, "--version=v1", *flags], check=True)
    return out
