"""What the operator knows about the cluster, in memory: the objects its informers watch,
indexed by the RecModel they belong to (pure: no API calls; thread-safe)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from recmodel_operator import FIELD_MANAGER, KIND
from recmodel_operator.kinds import CRD, DEPLOYMENT, NODE, POD, ChildKind
from recmodel_operator.writers import foreign_entries

Obj = dict[str, Any]
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

MANAGED_BY = f"app.kubernetes.io/managed-by={FIELD_MANAGER}"
INSTANCE_LABEL = "app.kubernetes.io/instance"
KSERVE_LABEL = "serving.kserve.io/inferenceservice"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"


def key_of(obj: Obj) -> ObjKey:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


def owner_by_reference(obj: Obj) -> str | None:
    """`namespace/name` of the RecModel that controls this object (its ownerReference)."""
    meta = obj["metadata"]
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return f"{meta.get('namespace', '')}/{ref['name']}"
    return None


def owner_by_label(label: str) -> Callable[[Obj], str | None]:
    def owner(obj: Obj) -> str | None:
        meta = obj["metadata"]
        value = (meta.get("labels") or {}).get(label)
        return f"{meta.get('namespace', '')}/{value}" if value else None

    return owner


def no_owner(_obj: Obj) -> str | None:
    return None


def without_bookkeeping(obj: Obj) -> Obj:
    """The object without managedFields (large, and never read here)."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def with_foreign_writers(obj: Obj) -> Obj:
    """The object with only the managedFields of other writers of its spec (`writers`): who
    contends with us for a field is read from them."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    foreign = foreign_entries(obj["metadata"].get("managedFields") or [])
    if foreign:
        meta["managedFields"] = foreign
    return {**obj, "metadata": meta}


def node_essentials(obj: Obj) -> Obj:
    """What placement depends on; heartbeats and images are dropped (they change all the time)."""
    meta = obj["metadata"]
    status = obj.get("status") or {}
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": "Node",
        "metadata": {"name": meta["name"], "labels": meta.get("labels") or {}},
        "spec": {k: v for k, v in (obj.get("spec") or {}).items() if k in ("taints", "unschedulable")},
        "status": {"allocatable": status.get("allocatable") or {}, "capacity": status.get("capacity") or {}},
    }


def crd_essentials(obj: Obj) -> Obj:
    """Which kind the CRD defines, which versions it serves, and whether it is established."""
    spec = obj.get("spec") or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    return {
        "metadata": {"name": obj["metadata"]["name"]},
        "group": spec.get("group"),
        "kind": (spec.get("names") or {}).get("kind"),
        "served": sorted(v["name"] for v in spec.get("versions") or [] if v.get("served")),
        "established": any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions),
    }


def _comparable(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}


@dataclass(frozen=True)
class Source:
    """One watched slice of the cluster: a kind, a server-side label selector, how to find the
    owning RecModel of an object, and what of it to keep."""

    name: str
    kind: ChildKind
    label_selector: str = ""
    owner: Callable[[Obj], str | None] = owner_by_reference
    keep: Callable[[Obj], Obj] = without_bookkeeping
    field_selector: str = ""  # e.g. spec.nodeName=node-1 (a node's own pods)

    def changed(self, old: Obj | None, new: Obj | None) -> bool:
        """Does the difference matter to anyone? (resourceVersion alone does not)"""
        if old is None or new is None:
            return old is not new
        return _comparable(old) != _comparable(new)


def child_source(kind: ChildKind) -> Source:
    return Source(name=kind.plural, kind=kind, label_selector=MANAGED_BY, keep=with_foreign_writers)


# Objects KServe creates for our InferenceServices, and the pods of both backends.
KSERVE_DEPLOYMENTS = Source("kserve-deployments", DEPLOYMENT, KSERVE_LABEL, owner_by_label(KSERVE_LABEL))
OUR_PODS = Source("pods", POD, MANAGED_BY, owner_by_label(INSTANCE_LABEL))
KSERVE_PODS = Source("kserve-pods", POD, KSERVE_LABEL, owner_by_label(KSERVE_LABEL))
GPU_NODES = Source("gpu-nodes", NODE, f"{GPU_PRESENT_LABEL}=true", no_owner, node_essentials)
CRDS = Source("crds", CRD, "", no_owner, crd_essentials)


@dataclass
class _Bucket:
    objects: dict[ObjKey, Obj] = field(default_factory=dict)
    by_owner: defaultdict[str, set[ObjKey]] = field(default_factory=lambda: defaultdict(set))


class Cache:
    """Objects by source, and an index from owner (`namespace/name` of a RecModel) to them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._buckets: defaultdict[str, _Bucket] = defaultdict(_Bucket)
        self._owners: dict[tuple[str, ObjKey], str | None] = {}

    def _index(self, source: Source, key: ObjKey, obj: Obj | None) -> None:
        bucket = self._buckets[source.name]
        previous = self._owners.pop((source.name, key), None)
        if previous is not None:
            bucket.by_owner[previous].discard(key)
            if not bucket.by_owner[previous]:
                del bucket.by_owner[previous]
        if obj is not None:
            owner = source.owner(obj)
            self._owners[(source.name, key)] = owner
            if owner is not None:
                bucket.by_owner[owner].add(key)

    def upsert(self, source: Source, raw: Obj) -> tuple[Obj | None, Obj]:
        """Stores what `source` keeps of `raw`; returns (old, new)."""
        obj = source.keep(raw)
        key = key_of(raw)
        with self._lock:
            bucket = self._buckets[source.name]
            old = bucket.objects.get(key)
            bucket.objects[key] = obj
            self._index(source, key, obj)
        return old, obj

    def remove(self, source: Source, namespace: str, name: str) -> Obj | None:
        key = (namespace, name)
        with self._lock:
            old = self._buckets[source.name].objects.pop(key, None)
            self._index(source, key, None)
        return old

    def replace(self, source: Source, raws: Iterable[Obj]) -> list[tuple[Obj | None, Obj | None]]:
        """A fresh list of everything the source sees; returns what changed as (old, new)."""
        fresh = {key_of(raw): raw for raw in raws}
        changes: list[tuple[Obj | None, Obj | None]] = []
        with self._lock:
            stale = set(self._buckets[source.name].objects) - set(fresh)
            for namespace, name in stale:
                changes.append((self.remove(source, namespace, name), None))
            for raw in fresh.values():
                old, new = self.upsert(source, raw)
                if source.changed(old, new):
                    changes.append((old, new))
        return changes

    def get(self, source: Source, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._buckets[source.name].objects.get((namespace, name))

    def owned(self, source: Source, owner: str) -> list[Obj]:
        with self._lock:
            bucket = self._buckets[source.name]
            return [bucket.objects[key] for key in sorted(bucket.by_owner.get(owner, ()))]

    def all(self, source: Source) -> list[Obj]:
        with self._lock:
            return list(self._buckets[source.name].objects.values())

    def count(self, source: Source) -> int:
        with self._lock:
            return len(self._buckets[source.name].objects)


def crd_serves(crds: Iterable[Obj], kind: ChildKind) -> bool:
    """Is `kind` served by one of these (established) CRDs?"""
    return any(
        c["group"] == kind.group and c["kind"] == kind.kind and kind.version in c["served"] and c["established"]
        for c in crds
    )
