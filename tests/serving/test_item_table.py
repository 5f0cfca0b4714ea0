"""Ids-only requests: candidates sent as bare ids take their features from the item table the
package carries (exported at training time); what a request sends overrides the table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster.harness.servers import kserve_server
from recmodel_handlers.model.package import load_package
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.training.data import make_world, sample_documents


@pytest.fixture(scope="module")
def core(trained_model: Path) -> RankingCore:
    return RankingCore.from_dir(trained_model, CoreSettings())


@pytest.fixture(scope="module")
def document(trained_model: Path) -> dict[str, Any]:
    """A document whose candidates are all in the table, sent with their full features."""
    table = load_package(trained_model).items or {}
    docs = sample_documents(make_world(0), 5, 100, seed=7)
    doc = next(d for d in docs if all(c["id"] in table for c in d["candidates"]))
    candidates = [{k: v for k, v in c.items() if k not in ("label", "relevance")} for c in doc["candidates"]]
    return {"user": doc["user"], "context": doc["context"], "candidates": candidates, "topK": 100}


def ranking(result: dict[str, Any]) -> list[tuple[str, float]]:
    return [(item["id"], item["score"]) for item in result["items"]]


def test_bare_ids_rank_exactly_like_full_features(core: RankingCore, document: dict[str, Any]) -> None:
    ids_only = {**document, "candidates": [c["id"] for c in document["candidates"]]}
    assert ranking(core.rank([ids_only])[0]) == ranking(core.rank([document])[0])
    as_objects = {**document, "candidates": [{"id": c["id"]} for c in document["candidates"]]}
    assert ranking(core.rank([as_objects])[0]) == ranking(core.rank([document])[0])


def test_fields_sent_override_the_table(core: RankingCore, document: dict[str, Any]) -> None:
    ids = [c["id"] for c in document["candidates"]]
    plain = dict(ranking(core.rank([{**document, "candidates": ids}])[0]))
    target = ids[0]
    cheaper = [{"id": target, "price": 0.5}, *ids[1:]]
    changed = dict(ranking(core.rank([{**document, "candidates": cheaper}])[0]))
    assert changed[target] != plain[target]
    assert all(changed[i] == plain[i] for i in ids[1:])


def test_unknown_and_numeric_ids_are_valid(core: RankingCore, document: dict[str, Any]) -> None:
    result = core.rank([{**document, "candidates": ["never-seen", 12345, document["candidates"][0]["id"]]}])[0]
    assert {item["id"] for item in result["items"]} == {"never-seen", "12345", document["candidates"][0]["id"]}


@pytest.fixture(scope="module")
def server(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kserve_server(trained_model, "ranker", tmp_path_factory.mktemp("items") / "serve.log") as url:
        yield url


def test_ids_only_over_http_and_how_much_smaller(server: str, document: dict[str, Any]) -> None:
    full = json.dumps({"instances": [document]}).encode()
    ids_only = json.dumps({"instances": [{**document, "candidates": [c["id"] for c in document["candidates"]]}]})
    answers = [
        httpx.post(f"{server}/v1/models/ranker:predict", content=body, timeout=60).json()["predictions"][0]
        for body in (full, ids_only.encode())
    ]
    assert ranking(answers[0]) == ranking(answers[1])
    assert len(full) > 4 * len(ids_only), (len(full), len(ids_only))
    bad = httpx.post(f"{server}/v1/models/ranker:predict", json={"instances": [{"candidates": [["a"]]}]})
    assert bad.status_code == 400 and "candidates[0]" in bad.json()["error"]
