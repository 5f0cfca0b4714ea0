"""`recmodel bench`: where the time of one in-process request goes, stage by stage."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import torch

from recmodel_handlers.ranking.core import RankingCore, tune_for_serving
from recmodel_handlers.settings import CoreSettings
from recmodel_handlers.tools.samples import make_request


def _interleaved_medians(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Runs each stage once per round, round after round, so that whatever else the machine
    does slows every stage alike; returns the median milliseconds of each."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def stage_times(core: RankingCore, candidates: int, repeat: int) -> dict[str, float]:
    request = make_request(candidates)
    body = orjson.dumps({"instances": [request]})
    # As retrieval hands candidates over: bare ids, features from the package's item table.
    ids_only = orjson.dumps({"instances": [{**request, "candidates": [c["id"] for c in request["candidates"]]}]})
    encoded = core.encode(request)
    scores = core.score([encoded]).scores[0]
    result = core.finish(encoded, scores)
    core.cache.max_entries = 0  # time the user tower too: no cache hits here
    owner = torch.zeros(candidates, dtype=torch.long)
    user, items = encoded.user, encoded.candidates

    def forward() -> object:
        with torch.inference_mode():
            return core.model(
                user.user,
                user.segment,
                user.device,
                user.query,
                user.dense,
                owner,
                items.item,
                items.category,
                items.brand,
                items.dense,
            )

    times = _interleaved_medians(
        {
            "json_decode_ms": lambda: orjson.loads(body),
            "features_ms": lambda: core.encode(request),
            "forward_ms": forward,
            "score_ms": lambda: core.score([encoded]),
            "rank_ms": lambda: core.finish(encoded, scores),
            "json_encode_ms": lambda: orjson.dumps({"predictions": [result]}),
            "request_bytes_in_out_ms": lambda: core.rank_body(body),
            **({"ids_only_request_ms": lambda: core.rank_body(ids_only)} if core.package.items else {}),
        },
        repeat,
    )
    times["request_over_forward"] = times["request_bytes_in_out_ms"] / times["forward_ms"]
    times["request_bytes"] = len(body)
    if "ids_only_request_ms" in times:
        times["ids_only_over_forward"] = times["ids_only_request_ms"] / times["forward_ms"]
        times["ids_only_request_bytes"] = len(ids_only)
    return times


def run(model_dir: Path, candidates: int = 1000, repeat: int = 50, precision: str = "fp32") -> dict[str, Any]:
    core = RankingCore.from_dir(
        model_dir, CoreSettings(precision=precision, cache_entries=0, max_candidates=max(candidates, 1000))
    )
    tune_for_serving()  # as the servers do after loading
    return {"candidates": candidates, "precision": core.precision, **stage_times(core, candidates, repeat)}
