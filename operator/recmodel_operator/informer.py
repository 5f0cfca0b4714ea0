"""Informers: list once, then watch, keeping the cache current and reporting each change.

One thread per source. A watch that the server ends is resumed from the last resourceVersion
(bookmarks keep it fresh); an expired one (410) or any error leads to a new list, after a
growing pause. A kind whose CRD is missing is not an error: the informer waits until the
CRD informer says it is served.

A watch that stays silent for `STALL_SECONDS` has stalled: the API server sends a bookmark on
every watch about once a minute (`defaultBookmarkFrequency` in k8s.io/apiserver's cacher), so
silence beyond that means the connection no longer delivers. It is logged, counted
(`recmodel_operator_watch_stalls_total`) and replaced by a fresh list and watch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from recmodel_operator import metrics
from recmodel_operator.cache import Cache, Obj, Source
from recmodel_operator.kinds import ChildKind
from recmodel_operator.kube import ApiError, Kube

log = logging.getLogger("recmodel.informer")

WATCH_SECONDS = 300
STALL_SECONDS = 70.0  # the API server's bookmark period (60 s) and a margin
MAX_BACKOFF = 30.0

OnChange = Callable[[Source, Obj | None, Obj | None], None]


class Informer:
    def __init__(
        self,
        kube: Kube,
        cache: Cache,
        source: Source,
        on_change: OnChange,
        served: Callable[[ChildKind], bool],
        served_changed: threading.Condition,
        stop: threading.Event,
    ) -> None:
        self.kube = kube
        self.cache = cache
        self.source = source
        self.on_change = on_change
        self.served = served
        self.served_changed = served_changed
        self.stop = stop
        self.synced = threading.Event()
        self.active = False  # listed and watching (False while its kind is not served)
        self.heartbeat = time.monotonic()  # the informer's thread made progress
        self.failing: tuple[float, str] | None = None  # (since, error) while lists or watches fail
        self._thread = threading.Thread(target=self._run, name=f"informer-{source.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _report(self, changes: list[tuple[Obj | None, Obj | None]]) -> None:
        for old, new in changes:
            self.on_change(self.source, old, new)

    def _wait_until_served(self) -> None:
        self.active = False
        self._report(self.cache.replace(self.source, []))
        self.synced.set()
        with self.served_changed:
            self.served_changed.wait_for(lambda: self.stop.is_set() or self.served(self.source.kind), timeout=60)
        self.heartbeat = time.monotonic()

    def _run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            if not self.served(self.source.kind):
                self._wait_until_served()
                continue
            try:
                self._list_and_watch()
                backoff = 1.0
            except ApiError as error:
                if error.not_found and not self.source.kind.builtin:
                    continue  # the CRD went away between our check and the list
                if error.stalled:
                    metrics.WATCH_STALLS.labels(source=self.source.name).inc()
                    backoff = 1.0
                self.failing = self.failing or (time.monotonic(), error.message)
                log.warning(f"watching {self.source.name}: {error}; listing again in {backoff:.0f}s")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _list_and_watch(self) -> None:
        selectors = {"label_selector": self.source.label_selector, "field_selector": self.source.field_selector}
        page = self.kube.list(self.source.kind, **selectors)
        self._report(self.cache.replace(self.source, page.items))
        self.failing = None
        self.active = True
        self.synced.set()
        version = page.resource_version
        while not self.stop.is_set() and self.served(self.source.kind):
            self.heartbeat = time.monotonic()
            events = self.kube.watch(
                self.source.kind, version, **selectors, timeout_seconds=WATCH_SECONDS, silence_seconds=STALL_SECONDS
            )
            for event in events:
                self.heartbeat = time.monotonic()
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:  # too old: start over from a fresh list
                        log.debug(f"watching {self.source.name}: {obj.get('message')}; listing again")
                        return
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message")))
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                obj.setdefault("apiVersion", self.source.kind.api_version)
                obj.setdefault("kind", self.source.kind.kind)
                if kind == "DELETED":
                    meta = obj["metadata"]
                    old = self.cache.remove(self.source, meta.get("namespace") or "", meta["name"])
                    self.on_change(self.source, old, None)
                    continue
                old, new = self.cache.upsert(self.source, obj)
                if self.source.changed(old, new):
                    self.on_change(self.source, old, new)
