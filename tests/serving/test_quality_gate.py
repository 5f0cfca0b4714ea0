"""The quality gate on the trained model: every lower precision is measured against fp32 on
the validation set saved with the model; a precision that loses too much is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request


@pytest.mark.parametrize("precision", ["int8", "bf16", "fp16"])
def test_precision_passes_with_its_measured_drop_or_is_refused_with_it(trained_model: Path, precision: str) -> None:
    core = RankingCore.from_dir(trained_model, CoreSettings(precision=precision, max_quality_drop=0.01))
    gate = core.gate
    assert gate is not None and gate.precision == precision
    assert 0 < gate.reference_ndcg <= 1 and 0 < gate.ndcg <= 1
    assert gate.drop == pytest.approx(max(0.0, gate.reference_ndcg - gate.ndcg))
    if gate.passed:
        assert gate.drop <= 0.01 and core.precision == precision
    else:
        assert core.precision == "fp32" and core.gate_error is not None
        assert f"{gate.drop:.4f}" in str(core.gate_error)
    print(gate.describe())
    assert core.rank([make_request(100)])[0]["items"]  # serves either way


@pytest.mark.parametrize("precision", ["int8", "bf16", "fp16"])
def test_a_zero_gate_refuses_every_lossy_precision(trained_model: Path, precision: str) -> None:
    core = RankingCore.from_dir(trained_model, CoreSettings(precision=precision, max_quality_drop=0.0))
    assert core.gate is not None and core.gate.order_changed, (
        "a lossy precision changes some ranking on the validation set"
    )
    assert not core.gate.passed
    assert core.precision == "fp32"
    assert "refused" in str(core.gate_error) and "serving fp32" in str(core.gate_error)


def test_the_gate_decision_is_visible_on_a_running_server(trained_model: Path, tmp_path: Path) -> None:
    import httpx

    from devcluster.harness.servers import kserve_server

    log = tmp_path / "serve.log"
    with kserve_server(trained_model, "ranker", log, extra_args=["--precision=int8", "--max-quality-drop=0"]) as url:
        metrics = httpx.get(f"{url}/metrics").text
        assert 'recmodel_precision_info{model="ranker",precision="fp32"} 1.0' in metrics
        assert 'recmodel_quality_gate_ndcg_drop{model="ranker",precision="int8"}' in metrics
    assert "precision int8 refused" in log.read_text()
