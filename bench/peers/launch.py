"""Starting and stopping the peers (bench/peers/*_server.py) from `make bench`: each in the
peers' venv and a process group of its own, since Ray and Triton start helper processes
(raylet, GCS, tritonserver, Python backend stubs) that must all go when the run ends."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.peers.batch import TRITON_PORTS, ray_arguments, triton_arguments
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


@dataclass(frozen=True)
class Peer:
    """A peer server: its module, the parser its `main` reads its flags with, when it is ready,
    and the flags of its listeners beyond --port (each given a free port)."""

    module: str
    parser: Callable[[], argparse.ArgumentParser]
    ready_path: str
    more_ports: tuple[str, ...] = ()

    def command(self, model_dir: Path, core_args: list[str], ports: list[int]) -> list[str]:
        """The command line (pure), with `ports`: --port first, then one per `more_ports`."""
        port, *more = ports
        extra = [f"{flag}={number}" for flag, number in zip(self.more_ports, more, strict=True)]
        return [str(PEERS_PYTHON), "-m", self.module, f"--port={port}", *extra, f"--model-dir={model_dir}", *core_args]


RAY = Peer("bench.peers.ray_server", ray_arguments, "/healthz")
PYTRITON = Peer("bench.peers.triton_server", triton_arguments, "/v2/models/ranker/ready", TRITON_PORTS)
PEERS = (RAY, PYTRITON)


@contextmanager
def _peer(
    peer: Peer, model_dir: Path, core_args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """The peer on free loopback ports, stopped with all its helper processes."""
    ports = free_ports(1 + len(peer.more_ports))
    port = ports[0]
    command = peer.command(model_dir, core_args, ports)
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
        wait_http(url + peer.ready_path, timeout=300, process=process, log=log)
        yield url
    finally:
        _stop_group(process)


def ray_serve(model_dir: Path, log: Path, core_args: list[str]) -> AbstractContextManager[str]:
    return _peer(RAY, model_dir, core_args, log)


def pytriton(model_dir: Path, log: Path, core_args: list[str]) -> AbstractContextManager[str]:
    # The Python backend stub must load this interpreter's libpython (see triton_server.py).
    libdir = str(sysconfig.get_config_var("LIBDIR"))
    env = {"LD_LIBRARY_PATH": ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)}
    return _peer(PYTRITON, model_dir, core_args, log, env)
