"""Shared fixtures (the local control plane, namespaces, trained models) and the markers.

`cluster` is set here on every test that needs the local control plane or its built binaries
(one that uses the `cluster` fixture, and every test under integration/, e2e/ and monitoring/;
tests/serving/test_load.py marks itself, for the load generator the cluster build makes),
so `pytest -m "not cluster"` runs what a fresh machine can run without building Kubernetes.
`slow` marks tests of more than about 20 s each (set in their modules)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from devcluster.harness.fixtures import Tools, running_cluster, temporary_namespace

REPO = Path(__file__).resolve().parent.parent


CLUSTER_FOLDERS = ("integration", "e2e", "monitoring")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(REPO / "tests").parts[0]
        if folder in CLUSTER_FOLDERS or "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Tools]:
    with running_cluster() as tools:
        yield tools


@pytest.fixture(scope="session")
def api_client(cluster: Tools) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture()
def namespace(cluster: Tools) -> Iterator[str]:
    with temporary_namespace(cluster) as name:
        yield name


def _train_package(
    out: Path, *, noise: bool = False, hidden: tuple[int, ...] = (128, 64), docs: int = 2500, version: str = "v7"
) -> Path:
    """A small model trained with the real training code (`noise`: on shuffled labels)."""
    from recmodel_handlers.model.features import build_item_table
    from recmodel_handlers.model.network import ModelConfig
    from recmodel_handlers.model.package import save_package
    from recmodel_handlers.training.data import make_world, sample_documents, shuffle_labels
    from recmodel_handlers.training.train import train

    world = make_world(0)
    train_docs = sample_documents(world, docs, 20, seed=1)
    if noise:
        train_docs = shuffle_labels(train_docs)
    test_docs = sample_documents(world, 100, 100, seed=2)
    validation = sample_documents(world, 30, 100, seed=3)
    result = train(train_docs, test_docs, config=ModelConfig(dim=32, hidden=hidden), epochs=2, log=lambda _m: None)
    save_package(
        out,
        model=result.model,
        stats=result.stats,
        validation=validation,
        metrics=result.metrics,
        name="ranker",
        version=version,
        items=build_item_table(train_docs),
    )
    return out


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained once per session."""
    return _train_package(tmp_path_factory.mktemp("model") / "ranker")


@pytest.fixture(scope="session")
def noise_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model trained on shuffled labels: it ranks, but unlike `trained_model`."""
    return _train_package(tmp_path_factory.mktemp("noise-model") / "ranker", noise=True, version="v8-noise")


@pytest.fixture(scope="session")
def heavy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose MLP is far larger (three 2048-wide layers): it ranks, but slowly."""
    out = tmp_path_factory.mktemp("heavy-model") / "ranker"
    return _train_package(out, hidden=(2048, 2048, 2048), docs=300, version="v8-heavy")
