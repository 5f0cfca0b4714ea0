"""The RecModel CustomResourceDefinition, generated from the pydantic models in `spec.py`.

`python -m recmodel_operator.crd` prints it; the chart and manifests/ hold its output and a
test fails when they drift. Pydantic's JSON schema is turned into a structural OpenAPI
schema: references inlined, optional fields unwrapped, free-form maps marked as such.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from recmodel_operator import GROUP, KIND, PLURAL, VERSION
from recmodel_operator.spec import RecModelSpec, RecModelStatus

JsonSchema = dict[str, Any]
_KEPT_KEYS = (
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "pattern",
    "maxLength",
    "format",
    "minItems",
    "maxItems",
)


def _resolve(schema: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in schema:  # X | None: the field is optional, its type is X
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unions other than X | None have no structural schema: {schema}")
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default") or (k == "default" and v is not None)}
        return _resolve({**options[0], **rest}, defs)
    return schema


def _object_default(node: JsonSchema) -> dict[str, Any]:
    return {
        name: copy.deepcopy(prop["default"]) for name, prop in node.get("properties", {}).items() if "default" in prop
    }


def structural(schema: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """One pydantic JSON-schema node as a Kubernetes structural schema node."""
    schema = _resolve(schema, defs)
    out: JsonSchema = {k: schema[k] for k in _KEPT_KEYS if k in schema}
    if "enum" in schema and "type" not in out:
        out["type"] = "string"
    if "validations" in schema or "x-kubernetes-validations" in schema:
        out["x-kubernetes-validations"] = schema["x-kubernetes-validations"]
    if schema.get("type") == "object":
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        if properties:
            out["properties"] = {name: structural(prop, defs) for name, prop in properties.items()}
            required = schema.get("required")
            if required:
                out["required"] = list(required)
            for name, prop in out["properties"].items():
                optional = properties[name].get("default", ...) is None  # `X | None = None`: no default
                if (
                    prop.get("type") == "object"
                    and "properties" in prop
                    and name not in (required or [])
                    and not optional
                ):
                    # Nested objects default to their fields' defaults (the API server checks CEL rules
                    # against this value, so an empty {} would not do).
                    prop.setdefault("default", _object_default(prop))
        elif isinstance(additional, dict) and additional:
            out["additionalProperties"] = structural(additional, defs)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    if schema.get("type") == "array":
        out["items"] = structural(schema["items"], defs)
    if schema.get("type") == "number":
        out.pop("format", None)
    return out


def _schema_of(model: type[RecModelSpec] | type[RecModelStatus]) -> JsonSchema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def status_schema() -> JsonSchema:
    schema = _schema_of(RecModelStatus)
    # Conditions merge by type, as every Kubernetes condition list does.
    schema["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def render_crd() -> dict[str, Any]:
    spec = _schema_of(RecModelSpec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "recmodel-operator", "app.kubernetes.io/part-of": "recmodel"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["recm"],
                "categories": ["all", "recmodel"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Runtime", "type": "string", "jsonPath": ".spec.runtime"},
                        {"name": "Backend", "type": "string", "jsonPath": ".spec.backend"},
                        {"name": "GPUs", "type": "integer", "jsonPath": ".spec.resources.gpu.count"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Ready", "type": "integer", "jsonPath": ".status.replicas.ready"},
                        {"name": "Canary", "type": "integer", "jsonPath": ".status.canary.weight"},
                        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 0},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "RecModel deploys an e-commerce ranking model and keeps it fast.",
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version: recmodel.dev/v1alpha1."},
                                "kind": {"type": "string", "description": "RecModel."},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `python -m recmodel_operator.crd` from recmodel_operator/spec.py. Do not edit.\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(crd_yaml())
