"""Starting real model-server processes (KServe's and TorchServe) for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from devcluster.common.ports import free_ports
from devcluster.common.stopping import stop_process

BIN = Path(sys.executable).parent


def wait_http(
    url: str, timeout: float = 120, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:] if log else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:] if log else ''}")


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` (e.g. `recmodel_requests_total`,
    `recmodel_batch_size_count`) in a Prometheus text exposition whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def scraped(url: str, name: str, **labels: str) -> float:
    """`metric_total` of a server's /metrics, read now."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return metric_total(response.read().decode(), name, **labels)


def listening_pids(port: int) -> list[int]:
    """The processes listening on a TCP `port` (several when replicas share it)."""
    import psutil

    pids = sorted(
        {
            int(c.pid)
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
        }
    )
    if not pids:
        raise RuntimeError(f"nothing listens on {port}")
    return pids


def torchserve_command(store: Path) -> list[str]:
    """TorchServe in the foreground on a model store made by `recmodel package` (pure)."""
    return [
        str(BIN / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        f"--model-store={store / 'model-store'}",
        f"--ts-config={store / 'config' / 'config.properties'}",
    ]


@contextmanager
def kserve_server(
    model_dir: Path,
    name: str,
    log: Path,
    extra_args: list[str] | None = None,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """`recmodel serve` on a free loopback port (or `port`); yields its base URL. `argv`
    replaces the default command line (the e2e tests pass exactly what the operator rendered)."""
    port = port or free_ports(1)[0]
    # A test's server stops at once: the 5 s drain is for pods behind a load balancer, and every
    # fixture's teardown waited it out. A command line the operator rendered (argv) keeps its own.
    command = argv or [
        str(BIN / "recmodel"),
        "serve",
        f"--model-dir={model_dir}",
        f"--name={name}",
        "--drain-seconds=0",
    ]
    command = [*command, "--host=127.0.0.1", f"--http-port={port}", *(extra_args or [])]
    with log.open("ab") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/v2/health/ready", process=process, log=log)
        yield url
    finally:
        stop_process(process)


@contextmanager
def kserve_replicas(
    model_dir: Path, name: str, log_dir: Path, count: int, extra_args: list[str] | None = None
) -> Iterator[str]:
    """`count` `recmodel serve` processes sharing one free loopback port (`--reuse-port`, one
    torch thread each): how `count` one-CPU replicas behind a Service run on one machine.
    Yields the URL once every replica listens (the first to answer readiness may be alone)."""
    (port,) = free_ports(1)
    args = [*(extra_args or []), "--reuse-port", "--threads=1"]
    with ExitStack() as stack:
        for index in range(count):
            log = log_dir / f"{name}-replica-{index}.log"
            url = stack.enter_context(kserve_server(model_dir, name, log, extra_args=args, port=port))
        deadline = time.monotonic() + 120
        while len(listening_pids(port)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} replicas not listening on {port} after 120 s")
            time.sleep(0.3)
        yield url


@contextmanager
def torchserve_server(
    store: Path, log_dir: Path, env: dict[str, str] | None = None, management_port: int | None = None
) -> Iterator[str]:
    """TorchServe on free loopback ports (inference, management, metrics, gRPC), through the
    TS_* variables that config.properties allows (enable_envvars_config). A caller that wants
    the management API passes the port for it."""
    inference, management, metrics, grpc_inference, grpc_management = free_ports(5)
    management = management_port or management
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "tmp").mkdir(exist_ok=True)
    environment = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        # TorchServe refuses to start while the pid file in the temporary folder names a running
        # instance: one folder per instance lets several run side by side (the benchmark's).
        "TMPDIR": str(log_dir / "tmp"),
        "TS_INFERENCE_ADDRESS": f"http://127.0.0.1:{inference}",
        "TS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{management}",
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{metrics}",
        "TS_GRPC_INFERENCE_PORT": str(grpc_inference),
        "TS_GRPC_MANAGEMENT_PORT": str(grpc_management),
        "LOG_LOCATION": str(log_dir),
        "METRICS_LOCATION": str(log_dir),
        **(env or {}),
    }
    log = log_dir / "torchserve.out"
    command = torchserve_command(store)
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=environment, cwd=log_dir, start_new_session=True
        )
    url = f"http://127.0.0.1:{inference}"
    try:
        wait_http(f"{url}/ping", process=process, log=log, timeout=180)
        # /ping answers before the worker has loaded the model: wait for the model itself.
        wait_http(f"http://127.0.0.1:{management}/models/ranker", process=process, log=log, timeout=180)
        _wait_worker_ready(f"http://127.0.0.1:{management}/models/ranker", process, log)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        stop_process(process)


def _wait_worker_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"torchserve exited:\n{log.read_text()[-3000:]}")
        with urllib.request.urlopen(url, timeout=5) as response:
            workers = json.loads(response.read())[0].get("workers", [])
        if workers and all(w.get("status") == "READY" for w in workers):
            return
        time.sleep(0.5)
    raise TimeoutError(f"TorchServe workers not ready:\n{log.read_text()[-3000:]}")


def have_java() -> bool:
    return shutil.which("java") is not None
