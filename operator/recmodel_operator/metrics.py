"""The operator's own Prometheus metrics."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("recmodel_operator_reconciles_total", "Reconciliations by result", ["result"])
RECONCILE_SECONDS = Histogram(
    "recmodel_operator_reconcile_duration_seconds",
    "Time of one reconciliation by result",
    ["result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHILD_WRITES = Counter("recmodel_operator_child_writes_total", "Children applied or deleted", ["action"])
API_REQUESTS = Counter("recmodel_operator_api_requests_total", "Kubernetes API requests by verb", ["verb"])
RECMODELS = Gauge("recmodel_operator_recmodels", "RecModels by phase", ["phase"])
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")

_phase_by_uid: dict[str, str] = {}
_lock = threading.Lock()


def record_phase(uid: str, phase: str | None) -> None:
    """Keeps the by-phase gauge equal to the RecModels this operator currently sees."""
    with _lock:
        if phase is None:
            _phase_by_uid.pop(uid, None)
        else:
            _phase_by_uid[uid] = phase
        for known in PHASES:
            RECMODELS.labels(phase=known).set(sum(1 for p in _phase_by_uid.values() if p == known))
