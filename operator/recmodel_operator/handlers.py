"""kopf handlers: thin wrappers that call `reconcile` and report what happened."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any

import kopf

from recmodel_operator import GROUP, PLURAL, VERSION, metrics
from recmodel_operator.kube import Kube
from recmodel_operator.reconcile import Outcome, Settings, reconcile

RESYNC_SECONDS = float(os.environ.get("RECMODEL_RESYNC_SECONDS", "10"))

_state: dict[str, Any] = {"kube": None, "settings": Settings()}
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


def configure(settings: Settings) -> None:
    _state["settings"] = settings


def _kube() -> Kube:
    if _state["kube"] is None:
        _state["kube"] = Kube(on_request=lambda verb: metrics.API_REQUESTS.labels(verb=verb).inc())
    kube: Kube = _state["kube"]
    return kube


@kopf.on.startup()
def configure_kopf(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "recmodel.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="recmodel.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="recmodel.dev", key="last-handled-configuration"
    )
    # Watches behind load balancers can hang silently: time them out and re-list.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8


def _run(body: kopf.Body, logger: kopf.Logger) -> Outcome:
    uid = body["metadata"]["uid"]
    with _locks[uid]:
        before_phase = (body.get("status") or {}).get("phase")
        started = time.monotonic()
        kube = _kube()
        requests_before = sum(kube.requests.values())
        try:
            outcome = reconcile(kube, dict(body), _state["settings"])
        except Exception:
            metrics.RECONCILES.labels(result="error").inc()
            metrics.RECONCILE_SECONDS.labels(result="error").observe(time.monotonic() - started)
            raise
        result = "failed-spec" if outcome.status.get("phase") == "Failed" else "ok"
        metrics.RECONCILES.labels(result=result).inc()
        metrics.RECONCILE_SECONDS.labels(result=result).observe(time.monotonic() - started)
        metrics.CHILD_WRITES.labels(action="apply").inc(outcome.applied)
        metrics.CHILD_WRITES.labels(action="prune").inc(outcome.pruned)
        phase = outcome.status.get("phase")
        metrics.record_phase(uid, phase)
        if outcome.applied or outcome.pruned:
            logger.info(
                f"applied {outcome.applied}, pruned {outcome.pruned} children "
                f"({sum(kube.requests.values()) - requests_before} API requests)"
            )
        if phase != before_phase:
            ready: dict[str, Any] = next((c for c in outcome.status.get("conditions", []) if c["type"] == "Ready"), {})
            event_type = "Warning" if phase in ("Failed", "Degraded") else "Normal"
            kopf.event(body, type=event_type, reason=str(phase), message=str(ready.get("message", "")))
        return outcome


@kopf.on.resume(GROUP, VERSION, PLURAL, retries=10, backoff=5, timeout=600)
@kopf.on.create(GROUP, VERSION, PLURAL, retries=10, backoff=5, timeout=600)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", retries=10, backoff=5, timeout=600)
def reconcile_on_change(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    _run(body, logger)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, sharp=False)
def resync(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Level-based check: puts back drifted or deleted children and refreshes status."""
    _run(body, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget(body: kopf.Body, **_: Any) -> None:
    """Children go with their owner (ownerReferences); only our own bookkeeping is left."""
    metrics.record_phase(body["metadata"]["uid"], None)
    _locks.pop(body["metadata"]["uid"], None)
