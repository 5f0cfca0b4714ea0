"""Malformed and hostile requests against a real `recmodel serve`: each gets a 4xx that names
the problem, one log line and no traceback, and the server answers a good request after it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devcluster.harness.servers import kserve_server
from recmodel_handlers.tools.samples import make_request

V1 = "/v1/models/ranker:predict"
V2 = "/v2/models/ranker/infer"


def v1(*instances: Any) -> bytes:
    return json.dumps({"instances": list(instances)}).encode()


def v2_doc(document: Any, **tensor: Any) -> bytes:
    entry = {"name": "request", "datatype": "BYTES", "shape": [1], "data": [json.dumps(document)], **tensor}
    return json.dumps({"inputs": [entry]}).encode()


def v2(*inputs: Any, **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


GOOD = make_request(20)
BYTES_INPUT = {"name": "request", "datatype": "BYTES", "shape": [1], "data": [json.dumps(GOOD)]}

# (name, method, path, headers, body, status, text the error must contain)
CASES: list[tuple[str, str, str, dict[str, str], bytes, int, str]] = [
    ("not json", "POST", V1, {}, b"{not json", 400, "body: is not valid JSON"),
    ("empty body", "POST", V1, {}, b"", 400, "body"),
    ("json array", "POST", V1, {}, b"[1,2]", 400, "body"),
    ("no instances", "POST", V1, {}, b"{}", 400, "instances"),
    ("instances not a list", "POST", V1, {}, b'{"instances": "all"}', 400, "instances"),
    ("empty instances", "POST", V1, {}, b'{"instances": []}', 400, "instances"),
    ("instance not an object", "POST", V1, {}, v1(5), 400, "instances[0]"),
    ("retrieve too many", "POST", V1, {}, v1({"user": {"id": "u"}, "retrieve": 10**6}), 400, "instances[0].retrieve"),
    ("candidates not a list", "POST", V1, {}, v1({"candidates": "x"}), 400, "instances[0].candidates"),
    ("empty candidates", "POST", V1, {}, v1({"candidates": []}), 400, "instances[0].candidates"),
    ("candidate without id", "POST", V1, {}, v1({"candidates": [{"id": "a"}, {"price": 3}]}), 400, "candidates[1].id"),
    ("candidate id an object", "POST", V1, {}, v1({"candidates": [{"id": {"x": 1}}]}), 400, "candidates[0].id"),
    ("candidate a list", "POST", V1, {}, v1({"candidates": [["a"]]}), 400, "candidates[0]"),
    ("candidate a float", "POST", V1, {}, v1({"candidates": [7.5]}), 400, "candidates[0]"),
    ("price a string", "POST", V1, {}, v1({"candidates": [{"id": "a", "price": "cheap"}]}), 400, "candidates[0].price"),
    ("negative price", "POST", V1, {}, v1({"candidates": [{"id": "a", "price": -1}]}), 400, "candidates[0].price"),
    (
        "NaN price",
        "POST",
        V1,
        {},
        b'{"instances":[{"candidates":[{"id":"a","price":NaN}]}]}',
        400,
        "candidates[0].price",
    ),
    ("Infinity", "POST", V1, {}, b'{"instances":[{"candidates":[{"id":"a","price":Infinity}]}]}', 400, "price"),
    ("1e309", "POST", V1, {}, b'{"instances":[{"candidates":[{"id":"a","price":1e309}]}]}', 400, "price"),
    ("feature a string", "POST", V1, {}, v1({"candidates": [{"id": "a", "features": {"rating": "x"}}]}), 400, "rating"),
    ("features a list", "POST", V1, {}, v1({"candidates": [{"id": "a", "features": [1]}]}), 400, "features"),
    ("category a number", "POST", V1, {}, v1({"candidates": [{"id": "a", "category": 3.5}]}), 400, "category"),
    (
        "duplicate ids",
        "POST",
        V1,
        {},
        v1({"candidates": [{"id": "b"}, {"id": "a"}, {"id": "a"}]}),
        400,
        "candidates[2].id",
    ),
    ("topK a string", "POST", V1, {}, v1({"candidates": [{"id": "a"}], "topK": "ten"}), 400, "topK"),
    ("topK zero", "POST", V1, {}, v1({"candidates": [{"id": "a"}], "topK": 0}), 400, "topK"),
    ("exclude not a list", "POST", V1, {}, v1({"candidates": [{"id": "a"}], "exclude": "a"}), 400, "exclude"),
    (
        "maxPerCategory -1",
        "POST",
        V1,
        {},
        v1({"candidates": [{"id": "a"}], "maxPerCategory": -1}),
        400,
        "maxPerCategory",
    ),
    ("user not an object", "POST", V1, {}, v1({"user": "u", "candidates": [{"id": "a"}]}), 400, "user"),
    (
        "user feature NaN-ish",
        "POST",
        V1,
        {},
        v1({"user": {"features": {"clicks_7d": "many"}}, "candidates": [{"id": "a"}]}),
        400,
        "clicks_7d",
    ),
    ("1001 candidates", "POST", V1, {}, v1(make_request(1001)), 400, "candidates"),
    ("11 x 1000 candidates", "POST", V1, {}, v1(*[make_request(1000, seed=i) for i in range(11)]), 400, "10000"),
    ("50 MB junk field", "POST", V1, {}, b'{"junk": "' + b"x" * (50 * 2**20) + b'"}', 413, "body"),
    ("deeply nested", "POST", V1, {}, b"[" * 100_000 + b"]" * 100_000, 400, "body"),
    ("unknown model", "POST", "/v1/models/nope:predict", {}, v1(GOOD), 404, "nope"),
    ("v2 empty inputs", "POST", V2, {}, v2(), 400, "inputs"),
    ("v2 inputs not a list", "POST", V2, {}, b'{"inputs": {}}', 400, "inputs"),
    ("v2 huge shape", "POST", V2, {}, v2({**BYTES_INPUT, "shape": [1000000000]}), 400, "inputs[0].shape"),
    ("v2 negative shape", "POST", V2, {}, v2({**BYTES_INPUT, "shape": [-1]}), 400, "inputs[0].shape"),
    ("v2 wrong datatype", "POST", V2, {}, v2({**BYTES_INPUT, "datatype": "FP32", "data": [1.0]}), 400, "datatype"),
    ("v2 unknown datatype", "POST", V2, {}, v2({**BYTES_INPUT, "datatype": "FP128"}), 400, "datatype"),
    ("v2 BYTES data numbers", "POST", V2, {}, v2({**BYTES_INPUT, "data": [1]}), 400, "inputs[0].data"),
    (
        "v2 extra input",
        "POST",
        V2,
        {},
        v2(BYTES_INPUT, {"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}),
        400,
        "inputs[1].name",
    ),
    ("v2 input twice", "POST", V2, {}, v2(BYTES_INPUT, BYTES_INPUT), 400, "inputs"),
    ("v2 no name", "POST", V2, {}, v2({k: v for k, v in BYTES_INPUT.items() if k != "name"}), 400, "inputs[0].name"),
    ("v2 no data", "POST", V2, {}, v2({k: v for k, v in BYTES_INPUT.items() if k != "data"}), 400, "inputs[0].data"),
    ("v2 document not json", "POST", V2, {}, v2({**BYTES_INPUT, "data": ["{oops"]}), 400, "inputs[0].data[0]"),
    (
        "v2 bad candidate",
        "POST",
        V2,
        {},
        v2_doc({"candidates": [{"id": "a", "price": "x"}]}),
        400,
        "inputs[0].data[0].candidates[0].price",
    ),
    ("v2 unknown output", "POST", V2, {}, v2(BYTES_INPUT, outputs=[{"name": "scores"}]), 400, "outputs[0].name"),
    ("v2 id a number", "POST", V2, {}, v2(BYTES_INPUT, id=5), 400, "id"),
    ("v2 parameters a list", "POST", V2, {}, v2(BYTES_INPUT, parameters=[1]), 400, "parameters"),
    (
        "v2 header length abc",
        "POST",
        V2,
        {"inference-header-content-length": "abc"},
        v2(BYTES_INPUT),
        400,
        "inference-header-content-length",
    ),
    (
        "v2 header length too big",
        "POST",
        V2,
        {"inference-header-content-length": "99999"},
        v2(BYTES_INPUT),
        400,
        "inference-header-content-length",
    ),
    (
        "v2 binary size without header",
        "POST",
        V2,
        {},
        v2({**{k: v for k, v in BYTES_INPUT.items() if k != "data"}, "parameters": {"binary_data_size": 4}}),
        400,
        "binary_data_size",
    ),
    ("v2 unknown version", "POST", "/v2/models/ranker/versions/v8/infer", {}, v2(BYTES_INPUT), 404, "v8"),
    (
        "duplicate key",
        "POST",
        V1,
        {},
        b'{"instances":[{"candidates":[{"id":"a","price":1,"price":2}]}]}',
        400,
        "instances[0].candidates[0]: has the key 'price' twice",
    ),
    (
        "v2 duplicate key in the document",
        "POST",
        V2,
        {},
        v2({**BYTES_INPUT, "data": ['{"candidates":[{"id":"a"}],"candidates":[{"id":"b"}]}']}),
        400,
        "has the key 'candidates' twice",
    ),
    ("bad deadline header", "POST", V1, {"x-request-timeout-ms": "soon"}, v1(GOOD), 400, "x-request-timeout-ms"),
    ("wrong method", "GET", V2, {}, b"", 405, "GET is not allowed"),
    ("unknown path", "GET", "/v2/nothing/here", {}, b"", 404, "Not Found"),
]


@pytest.fixture(scope="module")
def served(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("abuse") / "serve.log"
    with kserve_server(trained_model, "ranker", log) as url:
        yield url, log


def test_there_are_at_least_forty_kinds() -> None:
    assert len({name for name, *_ in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize(
    ("name", "method", "path", "headers", "body", "status", "text"), CASES, ids=[c[0] for c in CASES]
)
def test_each_is_refused_by_name_and_the_server_keeps_serving(
    served: tuple[str, Path],
    name: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    text: str,
) -> None:
    url, log = served
    before = log.stat().st_size
    response = httpx.request(method, f"{url}{path}", content=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text[:500]
    assert text in response.json()["error"], response.text[:500]
    good = httpx.post(f"{url}{V1}", json={"instances": [GOOD]}, timeout=60)
    assert good.status_code == 200 and good.json()["predictions"][0]["items"]
    logged = log.read_bytes()[before:].decode(errors="replace")
    assert "Traceback" not in logged
    assert logged.count("rejected status=") == 1, logged[-2000:]
    assert '"u-' not in logged and "sku-" not in logged  # no request content in the log
