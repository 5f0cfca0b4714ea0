from __future__ import annotations

from collections.abc import Iterator

import pytest

from devcluster.fixtures import Tools
from tests.operator_harness import OperatorProcess, install_crds, running_operator


@pytest.fixture(scope="session")
def crds(cluster: Tools) -> Tools:
    install_crds(cluster)
    return cluster


@pytest.fixture(scope="module")
def operator(crds: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(crds, log) as process:
        yield process
    print(log.read_text()[-5000:])
