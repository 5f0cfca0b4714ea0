"""One request decoder behind both servers: the same malformed body gets the same status and the
same message from KServe's server (`recmodel serve`) and from TorchServe running our handler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from recmodel_handlers.tools.samples import make_request

JSON = {"content-type": "application/json"}


def v1(*instances: Any) -> bytes:
    return json.dumps({"instances": list(instances)}).encode()


def one(**fields: Any) -> bytes:
    return v1({"candidates": [{"id": "a", **fields}]})


GOOD = make_request(20)

BODIES: list[tuple[str, bytes]] = [
    ("not json", b"{not json"),
    ("empty body", b""),
    ("json array", b"[1,2]"),
    ("json string", b'"rank these"'),
    ("json number", b"42"),
    ("no instances", b"{}"),
    ("instances not a list", b'{"instances": "all"}'),
    ("instances an object", b'{"instances": {}}'),
    ("empty instances", b'{"instances": []}'),
    ("instance not an object", v1(5)),
    ("instance null", v1(None)),
    ("retrieve zero", v1({"user": {"id": "u"}, "retrieve": 0})),
    ("retrieve a string", v1({"user": {"id": "u"}, "retrieve": "many"})),
    ("filters a list", v1({"user": {"id": "u"}, "filters": ["shoes"]})),
    ("unknown filter", v1({"user": {"id": "u"}, "filters": {"color": "red"}})),
    ("categories a string", v1({"filters": {"categories": "shoes"}})),
    ("negative minPrice", v1({"filters": {"minPrice": -1}})),
    ("minPrice above maxPrice", v1({"filters": {"minPrice": 9, "maxPrice": 3}})),
    ("candidates not a list", v1({"candidates": "x"})),
    ("empty candidates", v1({"candidates": []})),
    ("candidate without id", v1({"candidates": [{"id": "a"}, {"price": 3}]})),
    ("candidate id an object", v1({"candidates": [{"id": {"x": 1}}]})),
    ("candidate id empty", v1({"candidates": [{"id": ""}]})),
    ("candidate a list", v1({"candidates": [["a"]]})),
    ("candidate a float", v1({"candidates": [7.5]})),
    ("price a string", one(price="cheap")),
    ("negative price", one(price=-1)),
    ("price beyond float32", one(price=1e308)),
    ("NaN price", b'{"instances":[{"candidates":[{"id":"a","price":NaN}]}]}'),
    ("Infinity price", b'{"instances":[{"candidates":[{"id":"a","price":Infinity}]}]}'),
    ("-Infinity feature", b'{"instances":[{"candidates":[{"id":"a","features":{"rating":-Infinity}}]}]}'),
    ("1e309", b'{"instances":[{"candidates":[{"id":"a","price":1e309}]}]}'),
    ("a 400-digit integer", b'{"instances":[{"candidates":[{"id":"a","price":' + b"9" * 400 + b"}]}]}"),
    ("feature a string", one(features={"rating": "x"})),
    ("feature beyond float32", one(features={"popularity": -1e300})),
    ("features a list", one(features=[1])),
    ("category a number", one(category=3.5)),
    ("brand an object", one(brand={"name": "acme"})),
    ("duplicate ids", v1({"candidates": [{"id": "b"}, {"id": "a"}, {"id": "a"}]})),
    ("duplicate bare ids", v1({"candidates": ["sku-1", "sku-2", "sku-1"]})),
    ("duplicate non-ASCII ids", v1({"candidates": [{"id": "größe-ü"}, {"id": "größe-ü"}]})),
    ("topK a string", v1({"candidates": [{"id": "a"}], "topK": "ten"})),
    ("topK zero", v1({"candidates": [{"id": "a"}], "topK": 0})),
    ("topK a float", v1({"candidates": [{"id": "a"}], "topK": 2.5})),
    ("topK true", v1({"candidates": [{"id": "a"}], "topK": True})),
    ("exclude not a list", v1({"candidates": [{"id": "a"}], "exclude": "a"})),
    ("exclude numbers", v1({"candidates": [{"id": "a"}], "exclude": [1, 2]})),
    ("diversity above one", v1({"candidates": [{"id": "a"}], "diversity": 2})),
    ("diversity a string", v1({"candidates": [{"id": "a"}], "diversity": "some"})),
    ("maxPerCategory -1", v1({"candidates": [{"id": "a"}], "maxPerCategory": -1})),
    ("maxPerCategory a string", v1({"candidates": [{"id": "a"}], "maxPerCategory": "2"})),
    ("user not an object", v1({"user": "u", "candidates": [{"id": "a"}]})),
    ("user features a list", v1({"user": {"features": [1]}, "candidates": [{"id": "a"}]})),
    ("user feature a string", v1({"user": {"features": {"clicks_7d": "many"}}, "candidates": [{"id": "a"}]})),
    ("user feature beyond float32", v1({"user": {"features": {"clicks_7d": 1e300}}, "candidates": [{"id": "a"}]})),
    ("user segment an object", v1({"user": {"segment": {}}, "candidates": [{"id": "a"}]})),
    ("context not an object", v1({"context": [], "candidates": [{"id": "a"}]})),
    ("device a list", v1({"context": {"device": ["mobile"]}, "candidates": [{"id": "a"}]})),
    ("second instance bad", v1(GOOD, {"candidates": [{"id": "a", "price": "x"}]})),
    ("bare document bad", json.dumps({"candidates": [{"id": "a", "price": -2}]}).encode()),
    ("1001 candidates", v1(make_request(1001))),
    ("11 x 1000 candidates", v1(*[make_request(1000, seed=i) for i in range(11)])),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
]


def test_there_are_at_least_forty_bodies() -> None:
    assert len({name for name, _ in BODIES}) == len(BODIES) >= 40


@pytest.fixture(scope="module")
def kserve_url(server_url: str) -> str:
    return f"{server_url}/v1/models/ranker:predict"


@pytest.fixture(scope="module")
def torchserve_url(torchserve: tuple[str, int]) -> str:
    return f"{torchserve[0]}/predictions/ranker"


@pytest.mark.parametrize("content_type", ["application/json", None], ids=["json", "no-content-type"])
@pytest.mark.parametrize(("name", "body"), BODIES, ids=[name for name, _ in BODIES])
def test_kserve_and_torchserve_refuse_alike(
    kserve_url: str, torchserve_url: str, trained_model: Path, name: str, body: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    ours = httpx.post(kserve_url, content=body, headers=headers, timeout=60)
    theirs = httpx.post(torchserve_url, content=body, headers=headers, timeout=60)
    assert ours.status_code == 400, ours.text[:300]
    assert theirs.status_code == ours.status_code, theirs.text[:300]
    assert theirs.json() == ours.json()
    assert set(ours.json()) == {"error"}


def test_both_still_answer_a_good_request_alike(kserve_url: str, torchserve_url: str) -> None:
    ours = httpx.post(kserve_url, content=v1(GOOD), headers=JSON, timeout=60)
    theirs = httpx.post(torchserve_url, content=v1(GOOD), headers=JSON, timeout=60)
    assert ours.status_code == theirs.status_code == 200
    assert ours.json() == theirs.json()


def test_both_retrieve_alike_for_a_request_without_candidates(kserve_url: str, torchserve_url: str) -> None:
    body = v1({"user": {"id": "user-3"}, "topK": 10, "filters": {"maxPrice": 60}})
    ours = httpx.post(kserve_url, content=body, headers=JSON, timeout=60)
    theirs = httpx.post(torchserve_url, content=body, headers=JSON, timeout=60)
    assert ours.status_code == theirs.status_code == 200, ours.text[:300]
    assert ours.json() == theirs.json()
    assert len(ours.json()["predictions"][0]["items"]) == 10
