"""The contracts between the two distributions, the chart and the images, checked on both sides:
the operator renders a command line and environment; the handlers' own parser must accept them
and arrive at the same settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from recmodel_handlers.cli import build_parser
from recmodel_handlers.settings import CoreSettings, ServerSettings
from recmodel_operator.render.context import MODEL_DIR, MODEL_SERVER_PORT, Owner, RenderContext
from recmodel_operator.render.desired import render_children
from recmodel_operator.serving_contract import SERVE_COMMAND, runtime_args, tuning_env
from recmodel_operator.spec import RecModelSpec

REPO = Path(__file__).resolve().parents[2]
SPEC = RecModelSpec.model_validate(
    {
        "model": {"storageUri": "s3://m/v1"},
        "backend": "standalone",
        "optimization": {"precision": "int8", "compile": True, "maxQualityDrop": 0.02},
        "batching": {"maxBatchSize": 48, "maxLatencyMs": 3},
        "cache": {"maxEntries": 5000, "ttlSeconds": 60},
        "ranking": {"topK": 20, "maxCandidates": 3000, "maxRequestCandidates": 6000},
        "server": {"maxBodySize": "4Mi", "maxQueue": 12, "maxQueueMs": 40, "requestTimeoutMs": 2500, "drainSeconds": 3},
    }
)
EXPECTED = CoreSettings(
    precision="int8",
    compile=True,
    max_quality_drop=0.02,
    max_batch_size=48,
    max_latency_ms=3.0,
    cache_entries=5000,
    cache_ttl_seconds=60.0,
    top_k=20,
    max_candidates=3000,
    max_request_candidates=6000,
)
EXPECTED_SERVER = ServerSettings(
    max_body_bytes=4 * 2**20, max_queue=12, max_queue_ms=40.0, request_timeout_ms=2500.0, drain_seconds=3.0
)


def _context(spec: RecModelSpec) -> RenderContext:
    return RenderContext(owner=Owner("ranker", "shop", "uid"), spec=spec)


def test_standalone_command_is_parsed_by_recmodel_serve_into_the_same_settings() -> None:
    deployment = render_children(_context(SPEC))[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == list(SERVE_COMMAND)
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    assert args.command == "serve"
    assert (args.model_dir, args.name, args.http_port, args.role) == (MODEL_DIR, "ranker", MODEL_SERVER_PORT, "all")
    assert CoreSettings.from_namespace(args) == EXPECTED
    assert ServerSettings.from_namespace(args) == EXPECTED_SERVER
    # the pod waits for the server's drain and its longest request: 3 + 3 + 5 s
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 11


def test_kserve_runtime_plus_model_args_plus_kserve_args_parse() -> None:
    runtime = yaml.safe_load((REPO / "manifests" / "kserve" / "clusterservingruntime.yaml").read_text())
    runtime_container = runtime["spec"]["containers"][0]
    assert runtime_container["args"] == runtime_args(MODEL_DIR, MODEL_SERVER_PORT)
    spec = SPEC.model_copy(update={"backend": "kserve"})
    isvc = render_children(_context(spec))[0]
    model_args = isvc["spec"]["predictor"]["model"]["args"]
    # KServe substitutes {{.Name}} and appends the model's args to the runtime's.
    argv = [a.replace("{{.Name}}", "ranker") for a in runtime_container["args"]] + model_args
    args = build_parser().parse_args(argv[1:])
    assert CoreSettings.from_namespace(args) == EXPECTED
    assert ServerSettings.from_namespace(args) == EXPECTED_SERVER
    assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] == 11
    # The transformer gets --model_name/--predictor_host from KServe's controller.
    with_transformer = RecModelSpec.model_validate(
        {**spec.model_dump(by_alias=True), "preprocessing": {"mode": "transformer"}}
    )
    transformer = render_children(_context(with_transformer))[0]
    container = transformer["spec"]["transformer"]["containers"][0]
    kserve_added = ["--model_name=ranker", "--predictor_host=ranker-predictor.shop"]
    args = build_parser().parse_args(container["command"][1:] + container["args"] + kserve_added)
    assert (args.role, args.predictor_host, args.name) == ("transformer", "ranker-predictor.shop", "ranker")


def test_torchserve_environment_reaches_the_handler_settings() -> None:
    env = {e["name"]: e["value"] for e in tuning_env(SPEC)}
    assert CoreSettings.from_env(env) == EXPECTED


def _dockerfile(path: str) -> str:
    return (REPO / path).read_text()


def test_model_server_image_runs_what_the_operator_renders() -> None:
    text = _dockerfile("model_handlers/Dockerfile")
    cmd = yaml.safe_load(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[:2] == list(SERVE_COMMAND)
    assert f"--http-port={MODEL_SERVER_PORT}" in cmd
    assert f"--model-dir={MODEL_DIR}" in cmd
    assert str(MODEL_SERVER_PORT) in re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split()  # type: ignore[union-attr]
    assert re.search(r"^USER 1000$", text, re.M)
    build_parser().parse_args(cmd[1:])


def test_operator_image_and_chart_agree() -> None:
    text = _dockerfile("operator/Dockerfile")
    entrypoint = yaml.safe_load(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "02-operator.yaml").read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == entrypoint
    exposed = {int(p) for p in re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split()}  # type: ignore[union-attr]
    assert {p["containerPort"] for p in container["ports"]} == exposed
    assert "model_handlers" not in text  # the operator image carries no torch


@pytest.mark.parametrize("path", ["operator/Dockerfile", "model_handlers/Dockerfile"])
def test_images_run_as_non_root(path: str) -> None:
    assert re.search(r"^USER 1000$", _dockerfile(path), re.M)
