"""The large-model path as a user runs it, with the tables scaled down so the test stays quick:
`recmodel train --size large` (sparse row-wise Adagrad on the big world), a package with row-wise
int8 tables, and `recmodel serve --precision=int8` as a real process that memory-maps them,
passes the quality gate and answers ids-only requests as it answers full ones. TorchServe
serves the same package from outside its archive (RECMODEL_MODEL_DIR), as large models need."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from devcluster.harness.servers import kserve_server, listening_pids, torchserve_server
from recmodel_handlers.model.package import INT8_TABLES, WEIGHTS, load_package
from recmodel_handlers.serving.torchserve_store import build_model_store

RECMODEL = str(Path(sys.executable).parent / "recmodel")


@pytest.fixture(scope="module")
def sparse_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("large") / "model"
    subprocess.run(
        [
            RECMODEL,
            "train",
            "--size=large",
            "--user-buckets=200000",
            "--item-buckets=600000",
            f"--out={out}",
            "--rows=20000",
            "--epochs=1",
            "--name=ranker",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="module")
def int8_server(sparse_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-int8") / "serve.log"
    with kserve_server(sparse_model, "ranker", log, extra_args=["--precision=int8", "--max-quality-drop=0.01"]) as url:
        yield url


def _request(package_dir: Path, bare: bool) -> dict[str, Any]:
    package = load_package(package_dir)
    doc = package.validation[0]
    candidates = [
        c["id"] if bare else {k: v for k, v in c.items() if k not in ("label", "relevance")} for c in doc["candidates"]
    ]
    return {"user": doc["user"], "context": doc["context"], "candidates": candidates, "topK": 20}


def test_the_package_declares_its_size_and_its_untrained_rows(sparse_model: Path) -> None:
    manifest = json.loads((sparse_model / "manifest.json").read_text())
    assert manifest["modelConfig"]["sparse"] is True and manifest["modelConfig"]["dim"] == 64
    assert manifest["parameters"] > 800_000 * 64
    tables = manifest["metrics"]["tables"]
    assert tables["scorer.item"]["rows"] == 600_000 and 0 < tables["scorer.item"]["trained"] < 600_000
    assert "initial values" in manifest["untrainedRows"]
    int8_bytes = (sparse_model / INT8_TABLES).stat().st_size
    assert int8_bytes < 0.3 * (sparse_model / WEIGHTS).stat().st_size


def test_int8_serving_maps_the_tables_and_passes_the_gate(sparse_model: Path, int8_server: str) -> None:
    models = httpx.get(f"{int8_server}/v1/models/ranker", timeout=10)
    assert models.status_code == 200
    (pid,) = listening_pids(int(int8_server.rsplit(":", 1)[1]))
    mapped = {m.path for m in psutil.Process(pid).memory_maps()}
    assert str(sparse_model / INT8_TABLES) in mapped and str(sparse_model / WEIGHTS) in mapped
    info = httpx.get(f"{int8_server}/v2/models/ranker", timeout=10).json()
    assert info["name"] == "ranker"


def test_ids_only_requests_rank_like_full_ones(sparse_model: Path, int8_server: str) -> None:
    answers = []
    for bare in (False, True):
        body = {"instances": [_request(sparse_model, bare)]}
        response = httpx.post(f"{int8_server}/v1/models/ranker:predict", json=body, timeout=30)
        assert response.status_code == 200, response.text
        answers.append([(i["id"], i["score"]) for i in response.json()["predictions"][0]["items"]])
    assert answers[0] == answers[1]
    assert len(json.dumps(_request(sparse_model, True))) * 4 < len(json.dumps(_request(sparse_model, False)))


def test_torchserve_reads_a_large_package_from_outside_its_archive(sparse_model: Path, tmp_path: Path) -> None:
    store = build_model_store(sparse_model, tmp_path / "ts", max_batch_size=8, max_latency_ms=5, bundle_model=False)
    archive = store / "model-store" / "ranker.mar"
    assert archive.stat().st_size < 1_000_000  # the handler and the manifest, not the tables
    env = {"RECMODEL_MODEL_DIR": str(sparse_model), "RECMODEL_PRECISION": "int8"}
    with torchserve_server(store, tmp_path / "logs", env=env) as url:
        body = {"instances": [_request(sparse_model, True)]}
        response = httpx.post(f"{url}/predictions/ranker", json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"][0]["items"]) == 20
