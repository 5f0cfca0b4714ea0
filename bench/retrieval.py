"""Retrieval in `make bench`: the catalog's index on 1M (and 12M) generated items against the
exact search (build time, size, recall@100, per-query p50/p99), and the funnel in-process:
"retrieve 1,000 -> rank -> top 20" beside "the client sends 1,000 candidate ids"."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recmodel_handlers.model.package import catalog_vectors, user_vectors
from recmodel_handlers.model.retrieval import RetrievalIndex
from recmodel_handlers.ranking.core import RankingCore
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.training.data import catalog_table, make_world, sample_documents

CHUNK = 1_000_000  # items encoded at a time (a 12M-item table of dicts would not fit in memory)
QUERIES = 100


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _vectors(core: RankingCore, items: int) -> np.ndarray:
    world = make_world(5, n_items=items)
    parts = []
    for start in range(0, items, CHUNK):
        table = catalog_table(world, start, start + CHUNK)
        parts.append(catalog_vectors(core.package.model, core.package.stats, table))
    return np.concatenate(parts)


def index_row(core: RankingCore, items: int, users: np.ndarray) -> dict[str, Any]:
    vectors = _vectors(core, items)
    started = time.monotonic()
    tune_on = user_vectors(core.package.model, core.package.stats, core.package.validation)
    index = RetrievalIndex.build(vectors, tune_on=tune_on)  # probes tuned on the validation users
    build_s = time.monotonic() - started
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder))
        sizes = {path.name: path.stat().st_size / 2**20 for path in Path(folder).iterdir()}
    approximate, exact, recalls = [], [], []
    for user in users:
        t0 = time.perf_counter()
        found = index.search(user, 100)
        t1 = time.perf_counter()
        truth = index.exact(user, 100)
        t2 = time.perf_counter()
        approximate.append(t1 - t0)
        exact.append(t2 - t1)
        recalls.append(len(set(found.tolist()) & set(truth.tolist())) / 100)
    return {
        "items": items,
        "lists": int(index.ann.nlist),
        "probes": index.probes,
        "build_s": build_s,
        "files_mb": sizes,
        "recall@100": float(np.mean(recalls)),
        "worst_recall@100": float(np.min(recalls)),
        "index": _percentiles(approximate),
        "exact": _percentiles(exact),
    }


def funnel(core: RankingCore, users: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    """In-process, one request at a time: retrieval from the package's catalog against sending
    the same number of candidate ids, with the request bodies' sizes."""
    catalog = list(core.package.items or {})
    send = min(1000, len(catalog))
    rows: dict[str, Any] = {}
    for name, make in (
        ("retrieve", lambda u: {**u, "topK": 20, "retrieve": send}),
        ("client sends ids", lambda u: {**u, "topK": 20, "candidates": catalog[:send]}),
    ):
        seconds = []
        for i in range(repeat):
            request = make(users[i % len(users)])
            started = time.perf_counter()
            core.rank([request])
            seconds.append(time.perf_counter() - started)
        body = json.dumps({"instances": [make(users[0])]}).encode()
        rows[name] = {**_percentiles(seconds), "request_bytes": len(body)}
    return {"candidates": send, **rows}


def run(model_dir: Path, quick: bool) -> dict[str, Any]:
    core = RankingCore.from_dir(model_dir, CoreSettings(cache_entries=0))
    docs = sample_documents(make_world(0), QUERIES, 2, seed=21)
    users = [{"user": d["user"], "context": d["context"]} for d in docs]
    vectors = core._user_vectors([core.encoder.encode_user(u) for u in users]).float().numpy()
    out: dict[str, Any] = {"index": [], "funnel": funnel(core, users, 50 if quick else 200)}
    for items in (1_000_000,) if quick else (1_000_000, 12_000_000):
        print(f"  retrieval index over {items:,} items", flush=True)
        out["index"].append(index_row(core, items, vectors))
        print(f"    {json.dumps(out['index'][-1])}", flush=True)
    return out
