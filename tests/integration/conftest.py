from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.fixtures import Tools
from devcluster.testing import OperatorProcess, install_crds, operator_identity, running_operator


@pytest.fixture(scope="session")
def crds(cluster: Tools) -> Tools:
    install_crds(cluster)
    return cluster


@pytest.fixture(scope="session")
def operator_kubeconfig(crds: Tools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's ServiceAccount and RBAC, counted by the API server under FlowSchemas of its own."""
    return operator_identity(crds, tmp_path_factory.mktemp("identity") / "kubeconfig")


@pytest.fixture(scope="module")
def operator(
    crds: Tools, operator_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(crds, log, operator_kubeconfig) as process:
        yield process
    print(log.read_text()[-5000:])
