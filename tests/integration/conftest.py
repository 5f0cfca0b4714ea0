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
from devcluster.images import build as images


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


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """The server and storage-initializer images as `make images` builds and pushes them to the
    local registry (cached by content; the first run builds them), by name."""
    return {b.spec.name: b.reference for b in images.build_all(["recmodel-server", "storage-initializer"])}


@pytest.fixture(scope="session")
def server_image(built_images: dict[str, str]) -> str:
    return built_images["recmodel-server"]
