"""`recmodel train` as a user runs it: generated data or a CSV log in, a packaged model and its
metrics out, clearly better than ranking by popularity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recmodel_handlers.model.package import load_package
from recmodel_handlers.training.data import make_world, sample_documents, shuffle_labels, write_csv

pytestmark = pytest.mark.slow  # tens of seconds each (docs/development.md)

RECMODEL = str(Path(sys.executable).parent / "recmodel")


def _metrics(stdout: str) -> dict[str, tuple[float, float]]:
    return {m[0]: (float(m[1]), float(m[2])) for m in re.findall(r"^(\S+@?\d*)\s+([\d.]+)\s+([\d.]+)$", stdout, re.M)}


def test_train_on_generated_data_beats_popularity(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = subprocess.run(
        [RECMODEL, "train", f"--out={out}", "--rows=80000", "--epochs=3", "--seed=0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    metrics = _metrics(result.stdout)
    model, popularity = metrics["ndcg@10"]
    assert model >= popularity + 0.03, result.stdout
    assert metrics["auc"][0] > metrics["auc"][1]
    package = load_package(out)
    assert (
        package.manifest["metrics"]["model"]["ndcg@10"] == round(model, 4)
        or abs(package.manifest["metrics"]["model"]["ndcg@10"] - model) < 1e-4
    )
    assert len(package.validation) == 60 and json.loads((out / "manifest.json").read_text())["formatVersion"] == 1


def test_train_from_an_interaction_log_csv(tmp_path: Path) -> None:
    csv = tmp_path / "events.csv"
    write_csv(sample_documents(make_world(1), 1500, 20, seed=5), csv)
    out = tmp_path / "model"
    result = subprocess.run(
        [RECMODEL, "train", f"--out={out}", f"--data={csv}", "--epochs=1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    assert "ndcg@10" in result.stdout
    assert load_package(out).validation


def test_incremental_retraining_records_its_parent_and_refuses_a_worse_model(
    trained_model: Path, tmp_path: Path
) -> None:
    world = make_world(0)
    fresh = sample_documents(world, 1500, 20, seed=21)
    for doc in fresh[:500]:  # new users and items hash into the parent's tables
        doc["user"]["id"] = f"new-{doc['user']['id']}"
        for candidate in doc["candidates"][:5]:
            candidate["id"] = f"new-{candidate['id']}"
    write_csv(fresh, tmp_path / "new.csv")
    write_csv(sample_documents(world, 150, 20, seed=22), tmp_path / "validation.csv")
    write_csv(shuffle_labels(fresh), tmp_path / "noise.csv")
    common = [f"--from={trained_model}", f"--validation={tmp_path / 'validation.csv'}", "--epochs=2"]

    def retrain(data: str, out: str) -> subprocess.CompletedProcess[str]:
        command = [RECMODEL, "train", *common, f"--data={tmp_path / data}", f"--out={tmp_path / out}"]
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)

    good = retrain("new.csv", "v8")
    assert good.returncode == 0, good.stdout + good.stderr
    child = load_package(tmp_path / "v8")
    assert child.version == "v8" and child.name == "ranker"
    parent = child.manifest["parent"]
    assert parent["version"] == "v7" and parent["name"] == "ranker"
    new_ndcg, parent_ndcg = (
        child.manifest["metrics"]["model"]["ndcg@10"],
        child.manifest["metrics"]["parent"]["ndcg@10"],
    )
    assert parent["ndcg@10"] == parent_ndcg
    assert new_ndcg >= parent_ndcg - 0.01
    assert _metrics(good.stdout)["ndcg@10"] == (round(new_ndcg, 4), round(parent_ndcg, 4))

    bad = retrain("noise.csv", "noise")
    assert bad.returncode == 1
    assert "refused: the new model's ndcg@10 is" in bad.stderr and "below its parent ranker v7" in bad.stderr
    assert not (tmp_path / "noise").exists()
