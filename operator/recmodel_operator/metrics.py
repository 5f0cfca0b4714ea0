"""The operator's own Prometheus metrics (what it did; API traffic is measured at the API server)."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

from recmodel_operator.conditions import Phase

RECONCILES = Counter("recmodel_operator_reconciles_total", "Reconciliations by result", ["result"])
RECONCILE_SECONDS = Histogram(
    "recmodel_operator_reconcile_duration_seconds",
    "Time of one reconciliation by result",
    ["result"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHILD_WRITES = Counter("recmodel_operator_child_writes_total", "Children applied or deleted", ["action"])
API_REQUESTS = Counter("recmodel_operator_api_requests_total", "Kubernetes API requests sent, by verb", ["verb"])
RECMODELS = Gauge("recmodel_operator_recmodels", "RecModels by phase", ["phase"])
QUEUE_DEPTH = Gauge("recmodel_operator_queue_depth", "RecModels waiting to be reconciled")
CACHES_SYNCED = Gauge("recmodel_operator_caches_synced", "1 once every informer has listed its objects")
WATCH_STALLS = Counter(
    "recmodel_operator_watch_stalls_total",
    "Watches that went silent (no event, no bookmark) and were replaced",
    ["source"],
)
LEADER = Gauge("recmodel_operator_leader", "1 while this replica holds the lease and reconciles")
PHASES = tuple(str(phase) for phase in Phase)

_phase_by_key: dict[str, str] = {}
_lock = threading.Lock()
for _phase in PHASES:
    RECMODELS.labels(phase=_phase).set(0)


def observe_reconcile(result: str, seconds: float) -> None:
    RECONCILES.labels(result=result).inc()
    RECONCILE_SECONDS.labels(result=result).observe(seconds)


def record_phase(key: str, phase: str | None) -> None:
    """Keeps the by-phase gauge equal to the RecModels this operator currently sees."""
    with _lock:
        old = _phase_by_key.pop(key, None)
        if old is not None:
            RECMODELS.labels(phase=old).dec()
        if phase is not None:
            _phase_by_key[key] = phase
            RECMODELS.labels(phase=phase).inc()
