"""`recmodel predict` and `recmodel fetch` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recmodel_handlers.model.package import load_package
from recmodel_handlers.tools.samples import make_request

RECMODEL = str(Path(sys.executable).parent / "recmodel")


def test_predict_prints_the_ranking_with_a_host_header(server_url: str, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(make_request(200, top_k=5)))
    for protocol in ("v1", "v2"):
        result = subprocess.run(
            [
                RECMODEL,
                "predict",
                f"--url={server_url}",
                "--name=ranker",
                f"--request={request}",
                "--host=ranker.shop.example.com",
                f"--protocol={protocol}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        lines = result.stdout.splitlines()
        assert lines[0].startswith("instance 0: model ranker v7")
        ranked = [line.split() for line in lines[1:]]
        assert [r[0] for r in ranked] == ["1.", "2.", "3.", "4.", "5."]
        scores = [float(r[2]) for r in ranked]
        assert scores == sorted(scores, reverse=True)


def test_fetch_copies_a_file_uri_model(trained_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnt" / "models"
    subprocess.run(
        [RECMODEL, "fetch", f"--uri=file://{trained_model}", f"--out={out}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert load_package(out).name == "ranker"
    missing = subprocess.run(
        [RECMODEL, "fetch", f"--uri=file://{tmp_path}/nope", f"--out={out}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0 and "no such file or directory" in missing.stderr
