"""What `make images` reads from a Dockerfile and when it rebuilds (pure logic)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devcluster.build.versions import REPO_ROOT
from devcluster.images.catalog import IMAGES, VERSION, ImageSpec, content_key, copy_sources


def test_copy_sources_are_the_context_paths_of_copy_and_add_lines_only() -> None:
    dockerfile = """
# COPY commented/out /nowhere
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
COPY constraints.txt /src/constraints.txt
COPY --chown=1000:1000 model_handlers \\
     /src/model_handlers
ADD a b /dest/
COPY --from=build /venv /venv
RUN echo COPY not-a-source /x
"""
    assert copy_sources(dockerfile) == ["constraints.txt", "model_handlers", "a", "b"]


def test_every_image_copies_files_that_exist_and_takes_the_base_as_an_argument() -> None:
    for spec in IMAGES:
        text = (REPO_ROOT / spec.dockerfile).read_text()
        assert "ARG BASE=python:3.11-slim" in text and "FROM ${BASE}" in text, spec.dockerfile
        for source in copy_sources(text):
            assert (REPO_ROOT / source).exists(), f"{spec.dockerfile} copies {source}, which does not exist"
    assert {spec.reference("r:5") for spec in IMAGES} >= {
        f"r:5/recmodel/recmodel-server:{VERSION}",
        f"r:5/recmodel/recmodel-operator:{VERSION}",
    }


def _repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('v1')\n")
    (tmp_path / "other.txt").write_text("not copied\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")
    (tmp_path / "Dockerfile").write_text("ARG BASE=python:3.11-slim\nFROM ${BASE}\nCOPY app /app\n")
    return tmp_path


def test_the_content_key_follows_what_the_build_reads_and_nothing_else(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    spec = ImageSpec("app", "Dockerfile")
    first = content_key(spec, "sha256:base1", root)
    assert content_key(spec, "sha256:base1", root) == first
    (root / "other.txt").write_text("changed, but no COPY line reads it\n")
    (root / "app" / "main.pyc").write_bytes(b"ignored build output")
    assert content_key(spec, "sha256:base1", root) == first
    assert content_key(spec, "sha256:base2", root) != first  # a new base rebuilds
    (root / "app" / "new.py").write_text("x = 1\n")  # untracked, not ignored: the context has it
    second = content_key(spec, "sha256:base1", root)
    assert second != first
    (root / "app" / "main.py").write_text("print('v2')\n")
    assert content_key(spec, "sha256:base1", root) not in {first, second}
