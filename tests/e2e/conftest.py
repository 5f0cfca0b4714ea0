from __future__ import annotations

import pytest

from devcluster.harness.fixtures import Tools
from devcluster.harness.testing import install_crds


@pytest.fixture(scope="session")
def crds(cluster: Tools) -> Tools:
    install_crds(cluster)
    return cluster
