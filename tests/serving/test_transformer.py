"""KServe's transformer contract: features on a CPU transformer, scoring at a predictor over
V2 tensors; the answer is the same as role all."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.harness.servers import kserve_server
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.client import predict
from recmodel_handlers.tools.samples import make_request

pytestmark = pytest.mark.slow  # tens of seconds each (docs/development.md)


def test_transformer_and_predictor_answer_like_role_all(trained_model: Path, tmp_path: Path) -> None:
    request = make_request(500, top_k=100, maxPerCategory=5)
    expected = RankingCore.from_dir(trained_model, CoreSettings()).rank([request])[0]
    with kserve_server(
        trained_model, "ranker", tmp_path / "predictor.log", extra_args=["--role=predictor"]
    ) as predictor:
        host = predictor.removeprefix("http://")
        # The flags KServe's controller adds to a transformer container:
        kserve_flags = [f"--predictor_host={host}", "--model_name=ranker"]
        with kserve_server(
            trained_model, "ranker", tmp_path / "transformer.log", extra_args=["--role=transformer", *kserve_flags]
        ) as transformer:
            for protocol in ("v1", "v2"):
                answer = predict(transformer, "ranker", request, protocol=protocol)["predictions"][0]
                assert [i["id"] for i in answer["items"]] == [i["id"] for i in expected["items"]]
                assert [i["score"] for i in answer["items"]] == [i["score"] for i in expected["items"]]
