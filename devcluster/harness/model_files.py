"""A model package served over HTTP from this machine to the real nodes' pods, as a shop would
serve it from an object store's https endpoint: one `.tar.gz` that KServe's storage code (in
the storage-initializer, or `recmodel fetch`) downloads and unpacks into /mnt/models."""

from __future__ import annotations

import functools
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devcluster.common.ports import free_ports


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


def archive(model_dir: Path, out: Path) -> Path:
    """The package's files at the archive's top level (what lands in /mnt/models)."""
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return out


@contextmanager
def serving(model_dir: Path, work: Path, bind: str) -> Iterator[tuple[str, list[str]]]:
    """Serves `model_dir` as http://<bind>:<port>/<name>.tar.gz; yields that URI and the list of
    paths requested so far (proof that a pod fetched it)."""
    root = work / "model-files"
    root.mkdir(parents=True, exist_ok=True)
    name = f"{model_dir.name}.tar.gz"
    archive(model_dir, root / name)
    (port,) = free_ports(1)
    server = ThreadingHTTPServer((bind, port), functools.partial(_Quiet, directory=str(root)))
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{bind}:{port}/{name}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
