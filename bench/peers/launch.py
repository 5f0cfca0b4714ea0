"""Starting and stopping the peers (bench/peers/*_server.py) from `make bench`: each in the
peers' venv and a process group of its own, since Ray and Triton start helper processes
(raylet, GCS, tritonserver, Python backend stubs) that must all go when the run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from devcluster.common.ports import free_ports
from devcluster.harness.servers import wait_http

REPO_ROOT = Path(__file__).resolve().parents[2]
PEERS_PYTHON = REPO_ROOT / ".venv-peers" / "bin" / "python"


def available() -> bool:
    """Whether `make peers` has built the peers' venv."""
    return PEERS_PYTHON.exists()


def _stop_group(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.poll()
                return
            time.sleep(0.2)


@contextmanager
def _peer(
    module: str,
    args: list[str],
    ready_path: str,
    log: Path,
    env: dict[str, str] | None = None,
    more_ports: tuple[str, ...] = (),
) -> Iterator[str]:
    """`module` on free loopback ports: --port, and a free port for each flag in `more_ports`."""
    port, *more = free_ports(1 + len(more_ports))
    extra = [f"{flag}={number}" for flag, number in zip(more_ports, more, strict=True)]
    command = [str(PEERS_PYTHON), "-m", module, f"--port={port}", *extra, *args]
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + ready_path, timeout=300, process=process, log=log)
        yield url
    finally:
        _stop_group(process)


def ray_serve(model_dir: Path, log: Path, core_args: list[str]) -> AbstractContextManager[str]:
    return _peer("bench.peers.ray_server", [f"--model-dir={model_dir}", *core_args], "/healthz", log)


def pytriton(model_dir: Path, log: Path, core_args: list[str]) -> AbstractContextManager[str]:
    # The Python backend stub must load this interpreter's libpython (see triton_server.py).
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    env = {"LD_LIBRARY_PATH": ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)}
    return _peer(
        "bench.peers.triton_server", [f"--model-dir={model_dir}", *core_args], "/v2/models/ranker/ready", log, env
    )
