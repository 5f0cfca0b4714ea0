"""Prometheus metrics of the model servers (KServe's /metrics and TorchServe's handler)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_SECONDS = Histogram(
    "recmodel_request_duration_seconds",
    "Whole ranking request inside the model server",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "recmodel_stage_duration_seconds",
    "Time per stage: features, score, rank",
    ["model", "stage"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "recmodel_requests_total", "Ranking requests that reached the model, by HTTP code", ["model", "code"]
)
RESPONSES = Counter(
    "recmodel_http_responses_total",
    "Every HTTP response of the model server by route and code, refusals before the model included "
    "(the head's limits, body size and time, admission, deadline)",
    ["model", "route", "code"],
)
INFLIGHT = Gauge("recmodel_inflight_requests", "Requests being processed", ["model"])
CANDIDATES = Counter("recmodel_candidates_total", "Candidates scored", ["model"])
BATCH_SIZE = Histogram(
    "recmodel_batch_size", "Requests per forward pass (batching fill)", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
CACHE_LOOKUPS = Counter("recmodel_cache_lookups_total", "Per-user cache lookups", ["model", "result"])
QUALITY_DROP = Gauge(
    "recmodel_quality_gate_ndcg_drop", "NDCG@K drop of the requested precision vs fp32", ["model", "precision"]
)
PRECISION = Gauge("recmodel_precision_info", "Precision in use (1) by the model", ["model", "precision"])
EXPLAIN_SECONDS = Histogram(
    "recmodel_explain_duration_seconds",
    "Whole explain request (Shapley values per feature group), apart from the ranking path",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
EXPLAINS = Counter("recmodel_explain_requests_total", "Explain requests by HTTP code", ["model", "code"])
SHADOW_AGREEMENT = Histogram(
    "recmodel_shadow_agreement",
    "Ranking agreement (NDCG@10, this model's ranking as the ideal) of the canary's answer to a mirrored document",
    ["model"],
    buckets=(0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
SHADOW_REQUESTS = Counter(
    "recmodel_shadow_requests_total",
    "Requests mirrored to the canary, by result (compared, error, dropped)",
    ["model", "result"],
)
