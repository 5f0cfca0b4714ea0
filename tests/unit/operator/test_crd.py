"""The CRD is generated from the pydantic models, and the checked-in copies are that output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from recmodel_operator.crd import crd_yaml, render_crd
from recmodel_operator.spec import RecModelSpec

REPO = Path(__file__).resolve().parents[3]


def _spec_schema() -> dict:
    return render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("path", ["charts/recmodel-operator/crds/recmodels.recmodel.dev.yaml", "manifests/01-crd.yaml"])
def test_checked_in_crd_is_the_generated_one(path: str) -> None:
    assert (REPO / path).read_text() == crd_yaml(), f"{path} drifted: run `make crd`"


def test_every_field_has_a_description() -> None:
    def walk(node: dict, where: str) -> None:
        assert node.get("description"), f"{where} has no description"
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    for name, child in _spec_schema()["properties"].items():
        walk(child, f"spec.{name}")


def test_schema_and_model_agree_on_fields_defaults_and_enums() -> None:
    schema = _spec_schema()
    assert schema["required"] == ["model"]
    assert set(schema["properties"]) == {f.alias for f in RecModelSpec.model_fields.values()}
    assert schema["properties"]["runtime"]["enum"] == ["kserve", "torchserve"]
    assert schema["properties"]["optimization"]["properties"]["precision"]["enum"] == ["fp32", "bf16", "fp16", "int8"]
    defaults = RecModelSpec.model_validate({"model": {"storageUri": "s3://m/v1"}})
    assert (
        schema["properties"]["autoscaling"]["properties"]["minReplicas"]["default"] == defaults.autoscaling.min_replicas
    )
    assert schema["properties"]["canary"]["properties"]["trafficPercent"]["maximum"] == 99
    rules = [r["rule"] for r in schema["properties"]["autoscaling"]["x-kubernetes-validations"]]
    assert "self.minReplicas <= self.maxReplicas" in rules


def test_model_rejects_what_the_schema_rejects() -> None:
    with pytest.raises(ValidationError):
        RecModelSpec.model_validate({"model": {"storageUri": "ftp://x"}})
    with pytest.raises(ValidationError):
        RecModelSpec.model_validate({"model": {"storageUri": "s3://x"}, "optimization": {"precision": "int4"}})
    with pytest.raises(ValidationError):
        RecModelSpec.model_validate(
            {"model": {"storageUri": "s3://x"}, "canary": {"storageUri": "s3://y", "trafficPercent": 150}}
        )
    with pytest.raises(ValidationError, match="KServe's own autoscaler"):
        RecModelSpec.model_validate(
            {"model": {"storageUri": "s3://x"}, "autoscaling": {"metric": "cpu", "scaleDownStabilizationSeconds": 9}}
        )


def test_printer_columns_and_short_name() -> None:
    version = render_crd()["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Runtime",
        "Backend",
        "GPUs",
        "Phase",
        "Ready",
        "Canary",
        "URL",
        "Age",
    ]
    assert render_crd()["spec"]["names"]["shortNames"] == ["recm"]
    assert yaml.safe_load(crd_yaml()) == render_crd()
