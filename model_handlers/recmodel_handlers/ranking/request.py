"""A ranking request from bytes to work and back: the one decoder both servers call.

    decode(body)            JSON (errors name the field), the envelope, the request's candidate limit
    encode(encoder, docs)   features of every document, errors prefixed with where it came from
    prediction(...)         one document's answer; `v1_response` the whole V1 body

The envelope is KServe's V1 `{"instances": [doc, ...]}`; a body that is one ranking document
(an object with `candidates`, as KServe's TorchServe envelope hands each instance) is taken as
one instance. V2 carries the same bodies as BYTES elements (`serving.oip`), decoded here too.
KServe's server and TorchServe's handler answer the same bad body with the same 400 and text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from recmodel_handlers.errors import RequestError
from recmodel_handlers.model.features import EncodedRequest, FeatureEncoder
from recmodel_handlers.ranking import jsondoc

Doc = dict[str, Any]


@dataclass
class Documents:
    """The ranking documents of one request, and where each came from (for error paths)."""

    docs: list[Any]
    origins: list[str]

    def __len__(self) -> int:
        return len(self.docs)

    def extend(self, other: Documents) -> None:
        self.docs.extend(other.docs)
        self.origins.extend(other.origins)


def documents(payload: object, where: str = "") -> Documents:
    """The envelope's instances (or one bare document) of a parsed body. A V2 element (`where`
    given) is one document unless it holds the envelope."""
    prefix = f"{where}." if where else ""
    if type(payload) is not dict:
        raise RequestError(where or "body", 'must be a JSON object with "instances"')
    if "instances" not in payload:
        if where or "candidates" in payload:  # one ranking document
            return Documents([payload], [where or "instances[0]"])
        raise RequestError("instances", "is required")
    instances = payload["instances"]
    if type(instances) is not list or not instances:
        raise RequestError(f"{prefix}instances", "must be a non-empty list of ranking documents")
    return Documents(instances, [f"{prefix}instances[{i}]" for i in range(len(instances))])


def check_limit(found: Documents, limit: int) -> None:
    """The limit over a whole HTTP request, checked before any document is encoded."""
    total = sum(len(d["candidates"]) for d in found.docs if type(d) is dict and type(d.get("candidates")) is list)
    if total > limit:
        raise RequestError("instances", f"hold {total} candidates in all; one request may carry at most {limit}")


def decode(body: bytes | bytearray | str | object, limit: int) -> Documents:
    """A V1 body as ranking documents within the request's limit.

    `body` may arrive parsed already (TorchServe parses JSON bodies with Python's lenient
    `json`, which takes NaN): then a refusal is decided as for the same body sent as bytes, so
    both servers name the same field with the same words."""
    if isinstance(body, bytes | bytearray | str):
        found = documents(jsondoc.loads(bytes(body) if isinstance(body, bytearray) else body))
        check_limit(found, limit)
        return found
    try:
        found = documents(body)
        check_limit(found, limit)
    except RequestError:
        return decode(json.dumps(body), limit)
    return found


def encode_parsed(encoder: FeatureEncoder, found: Documents, body: object) -> list[EncodedRequest]:
    """`encode` of a body that arrived parsed: a refusal reads as the bytes' would (see `decode`)."""
    try:
        return encode(encoder, found)
    except RequestError:
        if isinstance(body, bytes | bytearray | str):
            raise
        decode(json.dumps(body), 2**62)  # raises the bytes' error when JSON itself refuses the body
        raise


def decode_parts(parts: Sequence[tuple[bytes, str]], limit: int) -> Documents:
    """V2: each BYTES element (with where it sits) holds a body as V1 takes it."""
    found = Documents([], [])
    for raw, where in parts:
        found.extend(documents(jsondoc.loads(raw, where), where))
    check_limit(found, limit)
    return found


def encode(encoder: FeatureEncoder, found: Documents) -> list[EncodedRequest]:
    encoded = []
    for doc, origin in zip(found.docs, found.origins, strict=True):
        try:
            encoded.append(encoder.encode(doc))
        except RequestError as error:
            raise error.within(origin) from None
    return encoded


def prediction(items: list[Doc], model: str, version: str) -> Doc:
    return {"items": items, "model": model, "version": version}


def v1_response(predictions: list[Doc]) -> bytes:
    return orjson.dumps({"predictions": predictions})
