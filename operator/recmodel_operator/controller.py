"""The controller: informers fill the cache, every change wakes the RecModel it belongs to, and
workers reconcile queued RecModels from memory. Only the leader's workers run; a standby keeps
its cache warm. A slow resync is the only timer, and it is only a safety net."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

from recmodel_operator import metrics
from recmodel_operator.cache import (
    CRDS,
    GPU_NODES,
    KSERVE_DEPLOYMENTS,
    KSERVE_PODS,
    OUR_PODS,
    Cache,
    Source,
    child_source,
    crd_serves,
)
from recmodel_operator.conditions import PROBLEM_PHASES, ConditionType, Phase
from recmodel_operator.conflicts import Contests
from recmodel_operator.informer import MAX_BACKOFF, STALL_SECONDS, Informer
from recmodel_operator.kinds import ALL_CHILD_KINDS, RECMODEL, ChildKind, kind_of
from recmodel_operator.kube import API_TIMEOUT, ApiError, Kube
from recmodel_operator.leader import LeaderElector
from recmodel_operator.reconcile import ChildKey, Outcome, Settings, reconcile
from recmodel_operator.workqueue import WorkQueue

log = logging.getLogger("recmodel.controller")

Obj = dict[str, Any]

RECMODELS = Source("recmodels", RECMODEL, owner=lambda _obj: None)
CHILD_SOURCES = {kind: child_source(kind) for kind in ALL_CHILD_KINDS}
# Longer than a silent watch, a pause between lists and a slow list: the thread itself is stuck.
STUCK_INFORMER_SECONDS = STALL_SECONDS + MAX_BACKOFF + 2 * API_TIMEOUT
SOURCES = (*CHILD_SOURCES.values(), KSERVE_DEPLOYMENTS, OUR_PODS, KSERVE_PODS, GPU_NODES, CRDS)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recmodel_key(obj: Obj) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


class ClusterView:
    """The cache as a reconcile reads it."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def served(self, kind: ChildKind) -> bool:
        return kind.builtin or kind == RECMODEL or crd_serves(self.cache.all(CRDS), kind)

    def child(self, kind: ChildKind, namespace: str, name: str) -> Obj | None:
        return self.cache.get(CHILD_SOURCES[kind], namespace, name)

    def owned_children(self, owner: str) -> list[Obj]:
        return [obj for source in CHILD_SOURCES.values() for obj in self.cache.owned(source, owner)]

    def managed(self, owner: str) -> list[Obj]:
        return self.cache.owned(KSERVE_DEPLOYMENTS, owner)

    def pods(self, owner: str) -> list[Obj]:
        return [*self.cache.owned(OUR_PODS, owner), *self.cache.owned(KSERVE_PODS, owner)]

    def gpu_nodes(self) -> list[Obj]:
        return self.cache.all(GPU_NODES)

    def remember(self, obj: Obj) -> None:
        """An object we just wrote, as the server returned it (the watch confirms it later)."""
        kind = kind_of(obj)
        self.cache.upsert(RECMODELS if kind == RECMODEL else CHILD_SOURCES[kind], obj)


def _recmodel_needs_work(old: Obj | None, new: Obj) -> bool:
    """Spec, deletion, finalizers, or a status that is not the one we wrote."""
    if old is None:
        return True
    meta_old, meta_new = old["metadata"], new["metadata"]
    return (
        meta_old.get("generation") != meta_new.get("generation")
        or meta_old.get("deletionTimestamp") != meta_new.get("deletionTimestamp")
        or meta_old.get("finalizers") != meta_new.get("finalizers")
        or meta_old.get("uid") != meta_new.get("uid")
        or old.get("status") != new.get("status")
    )


class Controller:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        *,
        workers: int = 4,
        resync_seconds: float = 300.0,
        stuck_seconds: float = 120.0,
        lease: tuple[str, str, str] | None = None,  # (namespace, name, identity); None: always lead
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.cache = Cache()
        self.view = ClusterView(self.cache)
        self.queue = WorkQueue()
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.stuck_seconds = stuck_seconds
        self.memory: dict[ChildKey, tuple[str, str]] = {}
        self.contests = Contests()
        self.stop_event = threading.Event()
        self.served_changed = threading.Condition()
        self.started = threading.Event()
        self.informers = [
            Informer(kube, self.cache, source, self._on_change, self.view.served, self.served_changed, self.stop_event)
            for source in SOURCES
        ]
        self.leader = LeaderElector(kube, *lease, on_started=self.enqueue_all) if lease is not None else None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._start, name="controller-start", daemon=True).start()

    def _start(self) -> None:
        started = time.monotonic()
        crd_informer = next(i for i in self.informers if i.source is CRDS)
        crd_informer.start()  # what is served decides what the others watch
        crd_informer.synced.wait(60)
        for informer in self.informers:
            if informer is not crd_informer:
                informer.start()
        for informer in self.informers:
            if not informer.synced.wait(max(1.0, 60 - (time.monotonic() - started))):
                log.warning(f"cache of {informer.source.name} not synced after 60s; starting anyway")
        log.info(
            f"caches synced in {time.monotonic() - started:.1f}s: "
            + ", ".join(f"{i.source.name} {self.cache.count(i.source)}" for i in self.informers if i.active)
        )
        for index in range(self.workers):
            threading.Thread(target=self._work, name=f"worker-{index}", daemon=True).start()
        threading.Thread(target=self._resync, name="resync", daemon=True).start()
        if self.leader is not None:
            self.leader.start()
        self.started.set()
        metrics.CACHES_SYNCED.set(1)

    def stop(self) -> None:
        self.stop_event.set()
        if self.leader is not None:
            self.leader.release()
        self.queue.shutdown()
        with self.served_changed:
            self.served_changed.notify_all()

    def leading(self) -> bool:
        return self.leader is None or self.leader.is_leader.is_set()

    # -- what wakes a RecModel -------------------------------------------------------------------

    def recmodel_event(self, event_type: str | None, obj: Obj) -> None:
        key = recmodel_key(obj)
        if event_type == "DELETED":
            self.cache.remove(RECMODELS, obj["metadata"]["namespace"], obj["metadata"]["name"])
            self.queue.drop(key)
            metrics.record_phase(key, None)
            return
        old, new = self.cache.upsert(RECMODELS, obj)
        if _recmodel_needs_work(old, new):
            self.queue.add(key)

    def _on_change(self, source: Source, old: Obj | None, new: Obj | None) -> None:
        if source is CRDS:
            with self.served_changed:
                self.served_changed.notify_all()
            self.enqueue_all()
        elif source is GPU_NODES:
            for body in self.cache.all(RECMODELS):
                if ((body.get("spec") or {}).get("resources") or {}).get("gpu", {}).get("count", 0):
                    self.queue.add(recmodel_key(body))
        else:
            owners = {source.owner(obj) for obj in (new, old) if obj is not None}
            for owner in owners - {None}:
                self.queue.add(str(owner))

    def enqueue_all(self) -> None:
        for body in self.cache.all(RECMODELS):
            self.queue.add(recmodel_key(body))

    def _resync(self) -> None:
        while not self.stop_event.wait(self.resync_seconds):
            self.enqueue_all()

    # -- work ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stop_event.is_set():
            metrics.LEADER.set(1 if self.leading() else 0)
            if not self.leading():
                assert self.leader is not None
                self.leader.is_leader.wait(1)
                continue
            key = self.queue.get(timeout=1)
            metrics.QUEUE_DEPTH.set(len(self.queue))
            if key is None:
                continue
            try:
                self._reconcile(key)
            finally:
                self.queue.done(key)

    def _reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        body = self.cache.get(RECMODELS, namespace, name)
        if body is None:
            self.queue.drop(key)
            return
        started = time.monotonic()
        try:
            outcome = reconcile(
                self.kube,
                self.view,
                body,
                self.settings,
                self.memory,
                _now(),
                contests=self.contests,
                clock=time.monotonic(),
            )
        except ApiError as error:
            if error.namespace_terminating or error.not_found:
                # Deleted meanwhile (the RecModel or its namespace): its DELETED event follows.
                log.debug(f"{key}: gone while being reconciled ({error.message})")
                return
            delay = self.queue.retry(key)
            log.warning(f"{key}: {error.message} (HTTP {error.status}); trying again in {delay:.1f}s")
            metrics.observe_reconcile("error", time.monotonic() - started)
            return
        except Exception:
            delay = self.queue.retry(key)
            log.exception(f"{key}: reconcile failed; trying again in {delay:.1f}s")
            metrics.observe_reconcile("error", time.monotonic() - started)
            return
        self.queue.forget(key)
        if outcome.requeue_after is not None:  # a canary under analysis, a contested child: look again
            self.queue.add_after(key, outcome.requeue_after)
        result = "ok" if outcome.problem is None else "spec-problem"
        metrics.observe_reconcile(result, time.monotonic() - started)
        metrics.CHILD_WRITES.labels(action="apply").inc(len(outcome.applied) + len(outcome.restored))
        metrics.CHILD_WRITES.labels(action="prune").inc(len(outcome.pruned))
        if outcome.status is not None:
            metrics.record_phase(key, outcome.status.get("phase"))
        self._report(key, body, outcome)

    def _report(self, key: str, body: Obj, outcome: Outcome) -> None:
        """A log line and Events for what changed; nothing when nothing did."""
        actions = [
            (verb, items)
            for verb, items in (
                ("repaired", outcome.repaired),
                ("applied", outcome.applied),
                ("deleted", outcome.pruned),
            )
            if items
        ]
        if outcome.finalizer_removed:
            actions.append(("removed the finalizer from", ["RecModel/" + body["metadata"]["name"]]))
        events: list[tuple[str, str, str]] = [
            ("Normal", verb.split()[0].capitalize(), f"{verb} {', '.join(items)}") for verb, items in actions
        ]
        if outcome.restored:  # the ConflictingWriter Event said it once: no Event per round
            actions.append(("restored (another writer contends)", outcome.restored))
        if actions:
            log.info(f"{key}: " + "; ".join(f"{verb} {', '.join(items)}" for verb, items in actions))
        status = outcome.status
        previous = body.get("status") or {}
        if status is not None and outcome.status_written:
            before = {c.get("type"): c for c in previous.get("conditions") or []}
            old = before.get(ConditionType.RECONCILED) or {}
            if outcome.problem and (old.get("reason"), old.get("message")) != outcome.problem:
                log.warning(f"{key}: {outcome.problem[0]}: {outcome.problem[1]}")
                events.append(("Warning", outcome.problem[0], outcome.problem[1]))
            phase, before_phase = status.get("phase"), previous.get("phase")
            # Progressing right after an apply says nothing the Applied event did not.
            if phase != before_phase and (phase != Phase.PROGRESSING or before_phase == Phase.READY):
                ready = next(c for c in status["conditions"] if c["type"] == ConditionType.READY)
                warning = status.get("phase") in PROBLEM_PHASES
                events.append(("Warning" if warning else "Normal", str(status.get("phase")), str(ready["message"])))
        events.extend(outcome.events)
        for event_type, reason, message in events:
            try:
                self.kube.event(body, type_=event_type, reason=reason, message=message, now=_now())
            except ApiError as error:
                if error.namespace_terminating:
                    return
                log.warning(f"{key}: could not record the event {reason}: {error.message}")

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Raises (the liveness probe fails, the pod restarts) only where a restart helps: an
        informer's thread or a reconcile that is stuck. A watch that stalls is replaced by its
        informer within `STALL_SECONDS`; an API server that cannot be reached is reported here
        but not failed on, since a new process could not reach it either."""
        now = time.monotonic()
        stuck = [i.source.name for i in self.informers if i.active and now - i.heartbeat > STUCK_INFORMER_SECONDS]
        busy = self.queue.longest_busy()
        if stuck:
            raise RuntimeError(f"informers of {', '.join(stuck)} made no progress for {STUCK_INFORMER_SECONDS:.0f}s")
        if busy > self.stuck_seconds:
            raise RuntimeError(f"a reconcile has been running for {busy:.0f}s (limit {self.stuck_seconds:.0f}s)")
        failing = {
            i.source.name: f"{i.failing[1]} (for {now - i.failing[0]:.0f}s)" for i in self.informers if i.failing
        }
        return {
            "started": self.started.is_set(),
            "leader": self.leading(),
            "queue": len(self.queue),
            "recmodels": self.cache.count(RECMODELS),
            **({"watchesFailing": failing} if failing else {}),
        }
