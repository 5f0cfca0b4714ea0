from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.harness.fixtures import Tools, bare_cluster
from devcluster.harness.testing import (
    OperatorProcess,
    install_crds,
    install_recmodel_runtime,
    operator_identity,
    running_operator,
)


@pytest.fixture(scope="session")
def crds(cluster: Tools) -> Iterator[Tools]:
    """Our CRD and runtime (KServe's come with its controller), KEDA's and Prometheus' CRDs.
    The runtime goes again afterwards: the e2e test installs it with the chart."""
    install_crds(cluster)
    install_recmodel_runtime(cluster)
    yield cluster
    cluster.kubectl_run("delete", "clusterservingruntime", "recmodel", "--ignore-not-found")


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tools]:
    """A second cluster with neither KServe nor KEDA: only our CRD."""
    with bare_cluster(tmp_path_factory.mktemp("bare-cluster")) as tools:
        install_crds(tools, third_party=False)
        yield tools


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
