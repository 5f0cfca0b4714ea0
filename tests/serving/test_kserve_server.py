"""`recmodel serve` as a real process over HTTP (KServe's ModelServer, V1 and V2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster.harness.servers import metric_total
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.client import predict
from recmodel_handlers.tools.samples import make_request


@pytest.fixture(scope="module")
def core(trained_model: Path) -> RankingCore:
    return RankingCore.from_dir(trained_model, CoreSettings())


def ids(prediction: dict[str, Any]) -> list[str]:
    return [item["id"] for item in prediction["items"]]


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_thousand_candidates_ranked_like_the_in_process_core(server_url: str, core: RankingCore, protocol: str) -> None:
    request = make_request(1000, top_k=1000)
    expected = core.rank([request])[0]
    answer = predict(server_url, "ranker", request, protocol=protocol)["predictions"][0]
    assert len(answer["items"]) == 1000
    assert ids(answer) == ids(expected)
    scores = [item["score"] for item in answer["items"]]
    assert scores == sorted(scores, reverse=True)
    assert answer["model"] == "ranker" and answer["version"] == "v7"


def test_request_rules_are_applied(server_url: str) -> None:
    request = make_request(300, top_k=20, maxPerCategory=2)
    full = predict(server_url, "ranker", make_request(300, top_k=300))["predictions"][0]
    request["exclude"] = [full["items"][0]["id"]]
    answer = predict(server_url, "ranker", request)["predictions"][0]
    assert len(answer["items"]) == 20
    assert full["items"][0]["id"] not in ids(answer)
    category = {c["id"]: c["category"] for c in request["candidates"]}
    counts: dict[str, int] = {}
    for item in answer["items"]:
        counts[category[item["id"]]] = counts.get(category[item["id"]], 0) + 1
    assert max(counts.values()) <= 2


def test_brand_seller_and_stock_rules_hold_on_every_answer(server_url: str) -> None:
    """One item per brand, no seller above a quarter of the slots, nothing out of stock: on
    each of 30 requests, and an explanation names the rule that kept each higher-scored item out."""
    for seed in range(30):
        request = make_request(300, seed=seed, top_k=20, maxPerBrand=1, maxSellerShare=0.25)
        for n, candidate in enumerate(request["candidates"]):
            candidate["seller"] = f"seller-{n % 5}"
            candidate["inStock"] = n % 7 != 0
        sent = {c["id"]: c for c in request["candidates"]}
        answer = predict(server_url, "ranker", request)["predictions"][0]
        shown = [sent[i] for i in ids(answer)]
        assert len(shown) == 20
        assert all(c["inStock"] for c in shown)
        brands = [c["brand"] for c in shown]
        assert len(set(brands)) == len(brands), brands
        sellers = [c["seller"] for c in shown]
        assert max(sellers.count(s) for s in sellers) <= 5, sellers
    explained = httpx.post(f"{server_url}/v1/models/ranker:explain", json={"instances": [request]}, timeout=60)
    assert explained.status_code == 200, explained.text
    passed_over = explained.json()["explanations"][0]["passedOver"]
    assert {p["rule"] for p in passed_over} <= {"maxPerBrand", "maxSellerShare", "inStock"}
    assert any(p["rule"] == "inStock" for p in passed_over)
    assert all(not sent[p["id"]]["inStock"] for p in passed_over if p["rule"] == "inStock")


BAD_REQUESTS = [
    (b"{not json", "body: is not valid JSON"),
    (json.dumps({"instances": [{"user": {"id": "u1"}, "candidates": []}]}).encode(), "candidates"),
    (json.dumps({"instances": [{"user": {"id": "u1"}, "filters": {"minPrice": -1}}]}).encode(), "filters.minPrice"),
    (json.dumps({"instances": [{"candidates": [{"id": "a", "price": "cheap"}]}]}).encode(), "candidates[0].price"),
    (json.dumps({"instances": [{"candidates": [{"id": "a"}, {"price": 3}]}]}).encode(), "candidates[1].id"),
    (
        json.dumps({"instances": [{"candidates": [{"id": "a", "features": {"rating": "x"}}]}]}).encode(),
        "candidates[0].features.rating",
    ),
    (b'{"instances": [{"candidates": [{"id": "a", "price": NaN}]}]}', "instances[0].candidates[0].price"),
    (json.dumps({"instances": [{"candidates": [{"id": "a"}], "topK": "ten"}]}).encode(), "topK"),
    (json.dumps({"instances": [{"candidates": [{"id": "a"}], "maxPerBrand": 0}]}).encode(), "maxPerBrand"),
    (json.dumps({"instances": [{"candidates": [{"id": "a"}], "maxSellerShare": 1.5}]}).encode(), "maxSellerShare"),
    (json.dumps({"instances": [{"candidates": [{"id": "a", "seller": 7}]}]}).encode(), "candidates[0].seller"),
    (
        json.dumps({"instances": [{"candidates": [{"id": "a"}, {"id": "b", "inStock": "no"}]}]}).encode(),
        "candidates[1].inStock",
    ),
    (json.dumps({"instances": [make_request(1001)]}).encode(), "candidates"),
    (json.dumps({"instances": "all"}).encode(), "instances"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
def test_bad_requests_get_400_naming_the_field_and_the_server_keeps_serving(
    server_url: str, body: bytes, field: str
) -> None:
    response = httpx.post(
        f"{server_url}/v1/models/ranker:predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    assert predict(server_url, "ranker", make_request(10))["predictions"][0]["items"]


def test_nan_price_from_a_lenient_json_encoder_is_refused_by_name(core: RankingCore) -> None:
    from recmodel_handlers.errors import RequestError

    with pytest.raises(RequestError, match=r"candidates\[0\]\.price"):
        core.rank([{"candidates": [{"id": "a", "price": float("nan")}]}])


def test_unknown_protocol_version_is_rejected(server_url: str) -> None:
    response = httpx.post(f"{server_url}/v3/models/ranker/infer", json={"instances": []})
    assert response.status_code in (400, 404)
    v2_wrong = httpx.post(
        f"{server_url}/v2/models/ranker/infer",
        json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
    )
    assert v2_wrong.status_code == 400
    assert "request" in v2_wrong.json()["error"]


def test_concurrent_requests_are_batched_and_answers_stay_per_request(server_url: str, core: RankingCore) -> None:
    requests = [make_request(200, seed=100 + i, top_k=50) for i in range(48)]
    expected = [ids(r) for r in core.rank(requests)]
    before = httpx.get(f"{server_url}/metrics").text
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda r: predict(server_url, "ranker", r)["predictions"][0], requests))
    assert [ids(a) for a in answers] == expected
    after = httpx.get(f"{server_url}/metrics").text
    batches = metric_total(after, "recmodel_batch_size_count") - metric_total(before, "recmodel_batch_size_count")
    batched_requests = metric_total(after, "recmodel_batch_size_sum") - metric_total(before, "recmodel_batch_size_sum")
    assert batched_requests == 48
    assert batches < 48, f"{batches} forward passes for 48 concurrent requests: no batching happened"


def test_metrics_expose_stage_latency_and_cache(server_url: str) -> None:
    request = make_request(50)
    predict(server_url, "ranker", request)
    predict(server_url, "ranker", request)
    text = httpx.get(f"{server_url}/metrics").text
    for stage in ("features", "score", "rank"):
        assert re.search(rf'recmodel_stage_duration_seconds_count{{model="ranker",stage="{stage}"}} [1-9]', text), stage
    assert metric_total(text, "recmodel_cache_lookups_total", model="ranker", result="hit") >= 1
    assert metric_total(text, "recmodel_requests_total", code="400") >= 0


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_model_dir_fails_at_startup_with_a_clear_message(trained_model: Path, tmp_path: Path, problem: str) -> None:
    model_dir = tmp_path / "model"
    if problem == "corrupt":
        import shutil

        shutil.copytree(trained_model, model_dir)
        (model_dir / "weights.pt").write_bytes(b"not a checkpoint")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "recmodel"),
            "serve",
            f"--model-dir={model_dir}",
            "--name=x",
            "--http-port=1",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    expected = "does not exist" if problem == "missing" else "cannot be loaded"
    assert expected in result.stderr, result.stderr[-2000:]
