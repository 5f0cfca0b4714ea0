from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.servers import kserve_server


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
