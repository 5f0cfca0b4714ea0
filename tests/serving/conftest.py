from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.common.ports import free_ports
from devcluster.harness.servers import have_java, kserve_server, torchserve_server
from recmodel_handlers.serving.torchserve_store import build_model_store


@pytest.fixture(scope="module")
def server_url(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with kserve_server(
        trained_model,
        "ranker",
        log,
        extra_args=[
            "--max-batch-size=16",
            "--max-latency-ms=20",
            # these tests check answers under concurrency, not load shedding (test_overload does)
            "--max-queue=64",
            "--max-queue-ms=2000",
        ],
    ) as url:
        yield url


@pytest.fixture(scope="session")
def torchserve(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """TorchServe serving the packaged .mar with our handler: (inference URL, management port)."""
    if not have_java():
        pytest.skip("TorchServe needs Java")
    (management_port,) = free_ports(1)
    out = tmp_path_factory.mktemp("ts")
    build_model_store(trained_model, out / "store", max_batch_size=8, max_latency_ms=5)
    with torchserve_server(out / "store", out / "logs", management_port=management_port) as url:
        yield url, management_port
