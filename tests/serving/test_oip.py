"""`recmodel serve` against the Open Inference Protocol: the published spec driven by
schemathesis, and the two real V2 clients users have (Triton's and KServe's)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from devcluster.harness.servers import kserve_server
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request

SPEC = Path(__file__).resolve().parents[1] / "third_party" / "specs" / "rest_predict_v2.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def server(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Default limits, as a user runs it."""
    with kserve_server(trained_model, "ranker", tmp_path_factory.mktemp("oip") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def expected(trained_model: Path) -> list[str]:
    core = RankingCore.from_dir(trained_model, CoreSettings())
    return [item["id"] for item in core.rank([make_request(300, top_k=10)])[0]["items"]]


def test_the_published_spec_passes_every_schemathesis_check(server: str, tmp_path: Path) -> None:
    # The spec spells paths with ${MODEL_NAME}/${MODEL_VERSION}; they become our model's.
    spec = tmp_path / "rest_predict_v2.yaml"
    spec.write_text(SPEC.read_text().replace("${MODEL_NAME}", "ranker").replace("${MODEL_VERSION}", "v7"))
    # The generic spec cannot describe one model's inputs: a schema-valid request naming
    # tensors this model does not have is rightly a 400 (the spec documents it), and the
    # response_schema_conformance check still holds that 400 to the spec's error schema.
    (tmp_path / "schemathesis.toml").write_text(
        '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "400"]\n'
    )
    result = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            str(spec),
            f"--url={server}",
            "--checks=all",
            "--max-examples=150",
            "--seed=7",
            "--no-color",
        ],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "6/6" in summary and " passed" in summary and "failure" not in summary.lower(), summary


def test_triton_client_json_and_binary(server: str, expected: list[str]) -> None:
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("ranker") and client.is_model_ready("ranker", "v7")
    assert not client.is_model_ready("ranker", "v8")
    metadata = client.get_model_metadata("ranker", "v7")
    assert metadata["versions"] == ["v7"]
    assert metadata["inputs"] == [{"name": "request", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "ranking", "datatype": "BYTES", "shape": [-1]}]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    document = json.dumps(make_request(300, top_k=10)).encode()
    for binary in (False, True):
        tensor = triton.InferInput("request", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([document], dtype=object), binary_data=binary)
        wanted = [triton.InferRequestedOutput("ranking", binary_data=binary)]
        for version in ("", "v7"):
            result = client.infer("ranker", [tensor], model_version=version, outputs=wanted, request_id="r-1")
            response = result.get_response()
            assert response["model_version"] == "v7" and response["id"] == "r-1"
            ranking = json.loads(result.as_numpy("ranking")[0])
            assert [item["id"] for item in ranking["items"]] == expected
    with pytest.raises(InferenceServerException, match="v8"):
        client.infer("ranker", [tensor], model_version="v8")


def test_kserve_client_v2(server: str, expected: list[str]) -> None:
    async def run() -> None:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            assert await client.is_server_ready(server)
            assert await client.is_server_live(server)
            assert await client.is_model_ready(server, "ranker")
            tensor = InferInput("request", [1], "BYTES", [json.dumps(make_request(300, top_k=10))])
            for binary in (False, True):
                if binary:
                    tensor.set_data_from_numpy(
                        np.array([json.dumps(make_request(300, top_k=10)).encode()], dtype=object), binary_data=True
                    )
                response = await client.infer(server, InferRequest("ranker", [tensor], request_id="k-1"), "ranker")
                assert response.id == "k-1"  # (kserve 0.21's client does not read model_version back)
                ranking = json.loads(response.outputs[0].data[0])
                assert [item["id"] for item in ranking["items"]] == expected
        finally:
            await client.close()

    asyncio.run(run())
