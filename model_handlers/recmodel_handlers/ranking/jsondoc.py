"""Request bodies as JSON, with errors that name the field.

orjson parses every good body; only a body it refuses is parsed a second time, by the
standard library with hooks that keep the NaN / Infinity / out-of-range numbers JSON does not
allow, so the error can say where they are (`instances[0].candidates[3].price`) instead of
"column 750".
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from recmodel_handlers.errors import RequestError

MAX_DEPTH = 64


class _NonFinite:
    def __init__(self, literal: str) -> None:
        self.literal = literal


def _number(literal: str) -> float | _NonFinite:
    value = float(literal)
    return value if math.isfinite(value) else _NonFinite(literal)


def _find(value: Any, path: str, depth: int = 0) -> tuple[str, _NonFinite] | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, _NonFinite):
        return path, value
    if type(value) is dict:
        for key, child in value.items():
            found = _find(child, f"{path}.{key}" if path else str(key), depth + 1)
            if found:
                return found
    elif type(value) is list:
        for i, child in enumerate(value):
            found = _find(child, f"{path}[{i}]", depth + 1)
            if found:
                return found
    return None


def _duplicates(text: bytes | str, value: Any, where: str) -> None:
    """orjson keeps the last of two equal keys; JSON leaves it undefined, so such a body is refused.
    Cheap test first: each key has its colon, and serialising what was parsed drops the colons of
    keys that were overwritten (escaped colons in strings can only hide a duplicate, never invent one)."""
    raw = text.encode() if isinstance(text, str) else text
    if raw.count(b":") <= orjson.dumps(value).count(b":"):
        return
    found = _find_duplicate(json.loads(raw, object_pairs_hook=_Located), "")
    if found is not None:
        path, key = found
        field = ".".join(part for part in (where if where != "body" else "", path) if part) or where
        raise RequestError(field or where, f"has the key {key!r} twice; every key may appear once")


class _Located(dict[str, Any]):
    """An object as parsed, remembering a key it saw twice."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.twice: str | None = None
        if len(self) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.twice = key
                    break
                seen.add(key)


def _find_duplicate(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, _Located):
        if value.twice is not None:
            return path, value.twice
        for key, child in value.items():
            if found := _find_duplicate(child, f"{path}.{key}" if path else str(key), depth + 1):
                return found
    elif isinstance(value, list):
        for i, child in enumerate(value):
            if found := _find_duplicate(child, f"{path}[{i}]", depth + 1):
                return found
    return None


def loads(body: bytes | str, where: str = "body") -> Any:
    """Parsed JSON, or RequestError naming the offending field (or the position for syntax)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        first = error
    else:
        _duplicates(body, value, where)
        return value
    try:
        text = body.decode() if isinstance(body, bytes) else body
        value = json.loads(text, parse_constant=_NonFinite, parse_float=_number, parse_int=_int)
    except (ValueError, RecursionError):
        raise RequestError(where, f"is not valid JSON: {first}") from first
    found = _find(value, "")
    if found is not None:
        path = found[0]
        field = f"{where}.{path}" if where != "body" and path else path or where
        raise RequestError(
            field, "is not a finite number (NaN, Infinity or beyond float64); JSON numbers must be finite"
        )
    raise RequestError(where, f"is not valid JSON: {first}") from first


def _int(literal: str) -> int | _NonFinite:
    # Python accepts huge integers; a value a float64 cannot hold is as useless as Infinity.
    if len(literal) > 308:
        return _NonFinite(literal[:20] + "...")
    return int(literal)
