"""Does a live child still carry what we apply, and which of its lists must be replaced? (pure)

We own the fields we send, nothing else: fields that others add (an env var, a label, an
annotation, a container port) are not drift, so we never fight over them. Lists of named
entries are compared as Kubernetes merges them, by name; other lists must match exactly.
Quantities compare by value, since the API server normalises them ("0.5" reads back "500m").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from recmodel_operator.quantity import same_quantity

Path = tuple[str | int, ...]


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _merge_key(item: dict[str, Any]) -> tuple[Any, ...]:
    """What the API server merges a list entry by (ports by number and protocol, the rest by name)."""
    if "port" in item and "targetPort" in item:  # a Service port
        return ("port", item.get("port"), item.get("protocol", "TCP"))
    if "containerPort" in item:
        return ("containerPort", item.get("containerPort"), item.get("protocol", "TCP"))
    return ("name", item.get("name"))


def _by_name(items: list[Any]) -> dict[Any, Any]:
    return {item.get("name"): item for item in items if isinstance(item, dict)}


def differences(live: Any, desired: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where `live` lacks a field of `desired` or holds another value: paths whose steps are keys,
    and for a list of named entries our entry itself (a plain list differs as a whole)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            yield path
            return
        for key, value in desired.items():
            if key in live:
                yield from differences(live[key], value, (*path, key))
            else:
                yield (*path, key)
    elif isinstance(desired, list):
        if isinstance(live, list) and _named(desired):
            live_by_name = _by_name(live)
            for entry in desired:
                yield from differences(live_by_name.get(entry["name"]), entry, (*path, entry))
        elif not (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        ):
            yield path
    elif not _same_value(live, desired):
        yield path


def _same_value(live: Any, desired: Any) -> bool:
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(live) == float(desired)
    return bool(live == desired) or (isinstance(desired, str) and same_quantity(live, desired))


def contains(live: Any, desired: Any) -> bool:
    """True when every field of `desired` is present in `live` with the same value."""
    return next(differences(live, desired), None) is None


def conflicting_lists(live: Any, desired: Any, path: Path = ()) -> list[Path]:
    """Lists where an entry of ours was re-keyed by someone else (a Service port 80 changed to 8081,
    still named `http`). Server-side apply merges by key, so it would add our entry beside theirs
    and the API server would refuse the duplicate name: such a list must be replaced whole."""
    found: list[Path] = []
    if isinstance(desired, dict) and isinstance(live, dict):
        for key, value in desired.items():
            if key in live:
                found += conflicting_lists(live[key], value, (*path, key))
    elif isinstance(desired, list) and isinstance(live, list) and _named(desired):
        live_index = {entry.get("name"): i for i, entry in enumerate(live) if isinstance(entry, dict)}
        for item in desired:
            index = live_index.get(item["name"])
            if index is None:
                continue
            if _merge_key(live[index]) != _merge_key(item):
                return [path]
            found += conflicting_lists(live[index], item, (*path, index))
    return found


def pointer(path: Path) -> str:
    """A JSON pointer (RFC 6901) to `path`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def value_at(obj: Any, path: Path) -> Any:
    for part in path:
        obj = obj[part]
    return obj
