"""Who else writes the fields we apply, read from a child's managedFields (pure).

Server-side apply records, per field manager, the fields it last set (`fieldsV1`): `f:name` is
a field, `k:{"name":"x"}` a list entry by its merge key, `v:...` a member of a set, `i:3` an
entry by index, `.` the entry itself. A manager other than ours that holds a field where the
live child differs from what we apply is the writer we are contending with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from recmodel_operator import FIELD_MANAGER

Obj = dict[str, Any]
Step = str | int | tuple[tuple[str, Any], ...]  # a field, a list index, or a list entry's merge key
ManagedPath = tuple[Step, ...]
DEFAULT_KEYS = {"protocol": "TCP"}  # merge-key fields the API server fills in when left out


def _step(key: str) -> Step:
    kind, _, rest = key.partition(":")
    if kind == "k":
        try:
            keys = json.loads(rest)
        except ValueError:
            return rest
        if isinstance(keys, dict):
            return tuple(sorted(keys.items()))
    if kind == "i" and rest.isdigit():
        return int(rest)
    return rest


def flatten(fields: Obj, prefix: ManagedPath = ()) -> Iterator[ManagedPath]:
    """Every field a `fieldsV1` set names, as a path."""
    for key, inner in fields.items():
        if key == ".":
            yield prefix
            continue
        path = (*prefix, _step(key))
        if isinstance(inner, dict) and inner:
            yield from flatten(inner, path)
        else:
            yield path


def foreign_entries(managed_fields: Iterable[Obj]) -> list[Obj]:
    """The managedFields entries of other managers that write the object itself (not its
    status, which its controller owns)."""
    return [
        entry
        for entry in managed_fields
        if entry.get("manager") != FIELD_MANAGER and entry.get("subresource", "") != "status" and entry.get("fieldsV1")
    ]


def _same_step(ours: Any, theirs: Step) -> bool:
    if isinstance(ours, dict):  # one of our named list entries, against a merge key
        return isinstance(theirs, tuple) and all(ours.get(k, DEFAULT_KEYS.get(k)) == v for k, v in theirs)
    return bool(ours == theirs)


def _overlaps(ours: tuple[Any, ...], theirs: ManagedPath) -> bool:
    """Does one path lie within the other (a field, or an atomic list holding it)?"""
    return all(_same_step(a, b) for a, b in zip(ours, theirs, strict=False))


def describe(path: tuple[Any, ...]) -> str:
    """`spec.template.spec.containers[server].env[EXTRA].value`"""
    text = ""
    for step in path:
        if isinstance(step, dict):
            label = step.get("name", next((v for k, v in step.items() if k not in ("protocol",)), "?"))
            text += f"[{label}]"
        elif isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def writers_of(managed_fields: Iterable[Obj], differing: Iterable[tuple[Any, ...]]) -> dict[str, list[str]]:
    """Manager -> the fields it holds where the live child differs from ours (sorted)."""
    differing = list(differing)
    found: dict[str, set[str]] = {}
    for entry in foreign_entries(managed_fields):
        held = list(flatten(entry["fieldsV1"]))
        for path in differing:
            if any(_overlaps(path, theirs) for theirs in held):
                found.setdefault(str(entry["manager"]), set()).add(describe(path))
    return {manager: sorted(fields) for manager, fields in sorted(found.items())}
