"""Explanations: Shapley values per feature group that add up to the score, that find the
generated world's planted price sensitivity, served on KServe's `:explain` verb apart from the
ranking path, and shown by `recmodel explain`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from devcluster.harness.servers import kserve_server, scraped
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request
from recmodel_handlers.training.data import make_world, sample_documents

BIN = Path(sys.executable).parent
GROUPS = ["user", "context", "item", "category", "brand", "price", "popularity", "rating", "discount"]


@pytest.fixture(scope="module")
def core(trained_model: Path) -> RankingCore:
    return RankingCore.from_dir(trained_model, CoreSettings())


def test_contributions_add_up_to_the_served_score(core: RankingCore) -> None:
    request = make_request(300, top_k=12)
    explained = core.explain([request])[0]
    served = core.rank([request])[0]
    assert [i["id"] for i in explained["items"]] == [i["id"] for i in served["items"]]
    assert explained["groups"] == GROUPS
    for item in explained["items"]:
        total = item["baseline"] + sum(item["contributions"].values())
        # Shapley's efficiency: exact up to float rounding (scores are rounded to 6 decimals)
        assert abs(total - item["score"]) < 1e-5, item
    spread = np.ptp([[item["contributions"][g] for g in GROUPS] for item in explained["items"]])
    assert spread > 0.01, "the groups matter: contributions are not all ~0"


def test_the_planted_price_sensitivity_shows_in_the_price_group(core: RankingCore) -> None:
    """The generated world lowers a click's logit with log(price): expensive items must get a
    negative price contribution, cheap ones a positive one."""
    logs, contributions = [], []
    for doc in sample_documents(make_world(0), 15, 100, seed=11):
        prices = {c["id"]: c["price"] for c in doc["candidates"]}
        for item in core.explain([{**doc, "topK": 30}])[0]["items"]:
            logs.append(math.log1p(prices[item["id"]]))
            contributions.append(item["contributions"]["price"])
    ranks = np.argsort(np.argsort(logs)), np.argsort(np.argsort(contributions))
    spearman = float(np.corrcoef(*ranks)[0, 1])
    assert spearman < -0.7, spearman


@pytest.fixture(scope="module")
def server(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kserve_server(trained_model, "ranker", tmp_path_factory.mktemp("explain") / "serve.log") as url:
        yield url


def test_explain_verb_is_served_apart_from_ranking(server: str) -> None:
    ranked_before = scraped(server, "recmodel_requests_total")
    request: dict[str, Any] = {"instances": [make_request(200, top_k=5), make_request(100, seed=3, top_k=3)]}
    response = httpx.post(f"{server}/v1/models/ranker:explain", json=request, timeout=60)
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    assert [len(e["items"]) for e in explanations] == [5, 3]
    for explanation in explanations:
        for item in explanation["items"]:
            assert abs(item["baseline"] + sum(item["contributions"].values()) - item["score"]) < 1e-5
    predicted = httpx.post(f"{server}/v1/models/ranker:predict", json=request, timeout=60).json()["predictions"]
    assert [[i["id"] for i in e["items"]] for e in explanations] == [[i["id"] for i in p["items"]] for p in predicted]
    assert scraped(server, "recmodel_explain_duration_seconds_count") == 1
    assert scraped(server, "recmodel_requests_total") == ranked_before + 1  # only the predict
    bad = httpx.post(f"{server}/v1/models/ranker:explain", json={"instances": [{"candidates": "x"}]})
    assert bad.status_code == 400 and "candidates" in bad.json()["error"]


def test_cli_prints_a_table_and_draws_a_heat_map(server: str, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(make_request(100, top_k=4)))
    png = tmp_path / "why.png"
    result = subprocess.run(
        [str(BIN / "recmodel"), "explain", f"--url={server}", "--name=ranker", f"--request={request}", f"--png={png}"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert "price" in lines[1] and "popularity" in lines[1]
    assert len([line for line in lines if line.strip().startswith(("1 ", "2 ", "3 ", "4 "))]) == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
