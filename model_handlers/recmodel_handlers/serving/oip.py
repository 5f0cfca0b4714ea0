"""The Open Inference Protocol (KServe V2) REST wire format, without a web framework.

Parses an inference request (JSON, or JSON plus the binary tensor data extension that
Triton's clients use), checks every input's shape and datatype against its data, and
encodes responses the spec's schemas accept: `model_version` a string, `parameters` absent
unless there are some, outputs in binary when the client asked for it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from recmodel_handlers.errors import RequestError
from recmodel_handlers.ranking import jsondoc

HEADER_LENGTH = "inference-header-content-length"
MAX_DIMS = 8

# datatype -> numpy dtype (None: BYTES, a list of byte strings)
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": None,
}


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]

    @property
    def count(self) -> int:
        return math.prod(self.shape)


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # names asked for; empty: all
    binary_outputs: set[str] = field(default_factory=set)  # names to return in binary
    binary_by_default: bool = False


@dataclass(frozen=True)
class TensorSpec:
    """A declared input or output, for the model metadata endpoint."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


# -- requests --------------------------------------------------------------------------------
def _object(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise RequestError(where, "must be a JSON object")
    return value


def _parameters(value: Any, where: str) -> dict[str, Any]:
    return {} if value is None else _object(value, where)


def _shape(value: Any, where: str) -> list[int]:
    if type(value) is not list or len(value) > MAX_DIMS:
        raise RequestError(where, f"must be a list of at most {MAX_DIMS} non-negative integers")
    if any(type(d) is not int or d < 0 for d in value):
        raise RequestError(where, "must hold non-negative integers")
    return value


def _flatten(data: Any, where: str) -> list[Any]:
    """Row-major data, flat or nested as the shape."""
    if type(data) is not list:
        raise RequestError(where, "must be a list")
    if not any(type(x) is list for x in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if type(item) is list:
                if len(stack) > MAX_DIMS:
                    raise RequestError(where, f"is nested deeper than {MAX_DIMS} levels")
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _json_values(datatype: str, values: list[Any], where: str) -> np.ndarray | list[bytes]:
    types = set(map(type, values))
    if datatype == "BYTES":
        if not types <= {str}:
            raise RequestError(where, "BYTES data must be strings")
        return [v.encode() for v in values]
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        if not types <= {bool}:
            raise RequestError(where, "BOOL data must be true or false")
        return np.asarray(values, dtype=np.bool_)
    if datatype.startswith("FP"):
        if not types <= {int, float}:
            raise RequestError(where, f"{datatype} data must be numbers")
        return np.asarray(values, dtype=dtype)
    if not types <= {int}:
        raise RequestError(where, f"{datatype} data must be integers")
    info = np.iinfo(dtype)
    if values and (min(values) < info.min or max(values) > info.max):
        raise RequestError(where, f"holds a value outside {datatype}'s range [{info.min}, {info.max}]")
    return np.asarray(values, dtype=dtype)


def _binary_values(datatype: str, raw: bytes, count: int, where: str) -> np.ndarray | list[bytes]:
    if datatype != "BYTES":
        dtype = np.dtype(DATATYPES[datatype])
        if len(raw) != count * dtype.itemsize:
            raise RequestError(where, f"has {len(raw)} bytes; shape and {datatype} need {count * dtype.itemsize}")
        return np.frombuffer(raw, dtype=dtype)
    values: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(where, "BYTES element is cut short (needs a 4-byte length)")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise RequestError(where, "BYTES element is longer than the data sent")
        values.append(raw[offset : offset + size])
        offset += size
    return values


def _tensor(value: Any, i: int, binary: memoryview | None, cursor: list[int]) -> Tensor:
    where = f"inputs[{i}]"
    item = _object(value, where)
    name, datatype = item.get("name"), item.get("datatype")
    if type(name) is not str or not name:
        raise RequestError(f"{where}.name", "is required (a non-empty string)")
    if datatype not in DATATYPES:
        raise RequestError(f"{where}.datatype", f"must be one of {', '.join(DATATYPES)}")
    shape = _shape(item.get("shape"), f"{where}.shape")
    count = math.prod(shape)
    parameters = _parameters(item.get("parameters"), f"{where}.parameters")
    size = parameters.get("binary_data_size")
    if size is not None:
        if binary is None:
            raise RequestError(f"{where}.parameters.binary_data_size", f"needs the {HEADER_LENGTH} header")
        if type(size) is not int or size < 0 or cursor[0] + size > len(binary):
            raise RequestError(f"{where}.parameters.binary_data_size", "does not fit the binary data sent")
        if "data" in item:
            raise RequestError(f"{where}.data", "must be absent when the tensor is sent as binary data")
        raw = bytes(binary[cursor[0] : cursor[0] + size])
        cursor[0] += size
        data = _binary_values(datatype, raw, count, f"{where}.data")
    else:
        if "data" not in item:
            raise RequestError(f"{where}.data", "is required")
        data = _json_values(datatype, _flatten(item["data"], f"{where}.data"), f"{where}.data")
    if len(data) != count:
        raise RequestError(f"{where}.shape", f"{shape} holds {count} elements but data has {len(data)}")
    return Tensor(name=name, datatype=datatype, shape=shape, data=data)


def _header_length(headers: dict[str, str], body_size: int) -> int | None:
    raw = headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise RequestError(f"header {HEADER_LENGTH}", f"must be a byte count, got {raw[:40]!r}")
    length = int(raw)
    if length > body_size:
        raise RequestError(f"header {HEADER_LENGTH}", f"is {length} but the body has {body_size} bytes")
    return length


def parse_infer_request(body: bytes, headers: dict[str, str]) -> InferRequest:
    """headers: lower-case names. JSON whatever the content type says (Triton's client sends
    none); the binary extension only when the header announces it."""
    length = _header_length(headers, len(body))
    binary = memoryview(body)[length:] if length is not None else None
    document = _object(jsondoc.loads(body[:length] if length is not None else body), "body")
    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        raise RequestError("id", "must be a string")
    parameters = _parameters(document.get("parameters"), "parameters")
    inputs = document.get("inputs")
    if type(inputs) is not list or not inputs:
        raise RequestError("inputs", "must be a non-empty list of tensors")
    cursor = [0]
    tensors = [_tensor(item, i, binary, cursor) for i, item in enumerate(inputs)]
    if binary is not None and cursor[0] != len(binary):
        raise RequestError("body", f"carries {len(binary) - cursor[0]} bytes of binary data no input claims")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise RequestError("inputs", "name each tensor once")
    request = InferRequest(id=request_id, inputs=tensors, parameters=parameters)
    request.binary_by_default = parameters.get("binary_data_output") is True
    outputs = document.get("outputs")
    if outputs is not None:
        if type(outputs) is not list:
            raise RequestError("outputs", "must be a list")
        for i, item in enumerate(outputs):
            output = _object(item, f"outputs[{i}]")
            name = output.get("name")
            if type(name) is not str or not name:
                raise RequestError(f"outputs[{i}].name", "is required (a non-empty string)")
            request.outputs.append(name)
            if _parameters(output.get("parameters"), f"outputs[{i}].parameters").get("binary_data") is True:
                request.binary_outputs.add(name)
    return request


def expect_inputs(request: InferRequest, declared: list[TensorSpec]) -> dict[str, Tensor]:
    """The request's inputs by name, checked against what the model declares."""
    by_name = {spec.name: spec for spec in declared}
    found: dict[str, Tensor] = {}
    for i, tensor in enumerate(request.inputs):
        spec = by_name.get(tensor.name)
        if spec is None:
            raise RequestError(
                f"inputs[{i}].name", f"{tensor.name[:64]!r} is not an input of this model ({', '.join(by_name)})"
            )
        if tensor.datatype != spec.datatype:
            raise RequestError(f"inputs[{i}].datatype", f"{tensor.name} must be {spec.datatype}")
        if len(tensor.shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, tensor.shape, strict=True)
        ):
            raise RequestError(f"inputs[{i}].shape", f"{tensor.name} must have shape {list(spec.shape)} (-1: any)")
        found[tensor.name] = tensor
    missing = [name for name in by_name if name not in found]
    if missing:
        raise RequestError("inputs", f"missing {', '.join(missing)}")
    return found


def expect_outputs(request: InferRequest, declared: list[TensorSpec]) -> None:
    names = {spec.name for spec in declared}
    for i, name in enumerate(request.outputs):
        if name not in names:
            raise RequestError(f"outputs[{i}].name", f"{name[:64]!r} is not an output of this model")


# -- responses -------------------------------------------------------------------------------
def _binary(tensor: Tensor) -> bytes:
    if isinstance(tensor.data, list):
        return b"".join(struct.pack("<I", len(v)) + v for v in tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=DATATYPES[tensor.datatype]).tobytes()


def _json_data(tensor: Tensor) -> list[Any]:
    if isinstance(tensor.data, list):
        return [v.decode() for v in tensor.data]
    return list(tensor.data.tolist())


def encode_infer_response(
    request: InferRequest, model_name: str, model_version: str, outputs: list[Tensor]
) -> tuple[bytes, dict[str, str]]:
    """Body and headers. Outputs the request did not ask for are left out."""
    if request.outputs:
        outputs = [o for o in outputs if o.name in request.outputs]
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        document["id"] = request.id
    blobs: list[bytes] = []
    described = []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.name in request.binary_outputs or (request.binary_by_default and not request.outputs):
            blob = _binary(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(tensor)
        described.append(entry)
    document["outputs"] = described
    header = orjson.dumps(document)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
