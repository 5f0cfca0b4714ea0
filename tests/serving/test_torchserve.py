"""TorchServe started with the packaged .mar answers like our KServe server (same core)."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.serving.torchserve_store import build_model_store
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request


@pytest.fixture(scope="module")
def torchserve_url(torchserve: tuple[str, int]) -> str:
    return torchserve[0]


@pytest.fixture(scope="module")
def management_port(torchserve: tuple[str, int]) -> int:
    return torchserve[1]


def test_torchserve_runs_the_generated_settings(management_port: int) -> None:
    """Read back through TorchServe's own management API: one worker, our batch size and delay
    (with the settings keyed under another version than the .mar's, TorchServe would run its
    defaults: batch 1, 100 ms, a worker per core)."""
    (model,) = httpx.get(f"http://127.0.0.1:{management_port}/models/ranker", timeout=30).json()
    assert model["modelVersion"] == "7"
    assert model["batchSize"] == 8
    assert model["maxBatchDelay"] == 5
    assert model["minWorkers"] == model["maxWorkers"] == 1
    assert len(model["workers"]) == 1


def test_package_lays_out_the_store_kserve_expects(trained_model: Path, tmp_path: Path) -> None:
    build_model_store(trained_model, tmp_path, max_batch_size=24, max_latency_ms=7)
    assert (tmp_path / "model-store" / "ranker.mar").is_file()
    config = (tmp_path / "config" / "config.properties").read_text()
    models = orjson.loads(next(line.split("=", 1)[1] for line in config.splitlines() if line.startswith("models=")))
    assert models["ranker"]["7"]["batchSize"] == 24  # keyed by the .mar's version (v7 -> "7")
    assert models["ranker"]["7"]["maxBatchDelay"] == 7
    assert "management_address=http://127.0.0.1:8081" in config  # never exposed beyond the pod


def test_torchserve_ranks_like_the_core(torchserve_url: str, trained_model: Path) -> None:
    core = RankingCore.from_dir(trained_model, CoreSettings())
    request = make_request(1000, top_k=1000)
    expected = [item["id"] for item in core.rank([request])[0]["items"]]
    response = httpx.post(
        f"{torchserve_url}/predictions/ranker", content=orjson.dumps({"instances": [request]}), timeout=60
    )
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["predictions"][0]["items"]] == expected
    single = httpx.post(f"{torchserve_url}/predictions/ranker", content=orjson.dumps(request), timeout=60)
    assert [item["id"] for item in single.json()["predictions"][0]["items"]] == expected


def test_torchserve_bad_request_is_400_and_it_keeps_serving(torchserve_url: str) -> None:
    bad = httpx.post(
        f"{torchserve_url}/predictions/ranker", content=b'{"candidates": [{"id": "a", "price": -3}]}', timeout=60
    )
    assert bad.status_code == 400
    assert "candidates[0].price" in bad.text
    good = httpx.post(f"{torchserve_url}/predictions/ranker", content=orjson.dumps(make_request(20)), timeout=60)
    assert good.status_code == 200
