"""`recmodel train` as a user runs it: generated data or a CSV log in, a packaged model and its
metrics out, clearly better than ranking by popularity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from recmodel_handlers.data import make_world, sample_documents, write_csv
from recmodel_handlers.package import load_package

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
