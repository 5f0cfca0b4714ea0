from __future__ import annotations

import pytest

from devcluster.fixtures import Tools
from devcluster.testing import install_crds


@pytest.fixture(scope="session")
def crds(cluster: Tools) -> Tools:
    install_crds(cluster)
    return cluster
