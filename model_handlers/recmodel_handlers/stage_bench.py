"""`recmodel bench`: where the time of one in-process request goes, stage by stage."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import torch

from recmodel_handlers.core import RankingCore
from recmodel_handlers.samples import make_request
from recmodel_handlers.settings import CoreSettings


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def stage_times(core: RankingCore, candidates: int, repeat: int) -> dict[str, float]:
    request = make_request(candidates)
    body = orjson.dumps({"instances": [request]})
    encoded = core.encode(request)
    scores = core.score([encoded]).scores[0]
    result = core.finish(encoded, scores)
    core.cache.max_entries = 0  # time the user tower too: no cache hits here
    with torch.inference_mode():
        forward = _median_ms(
            lambda: core.model.scorer(
                core.model.user_tower(
                    encoded.user.user, encoded.user.segment, encoded.user.device, encoded.user.query, encoded.user.dense
                )[torch.zeros(candidates, dtype=torch.long)],
                encoded.candidates.item,
                encoded.candidates.category,
                encoded.candidates.brand,
                encoded.candidates.dense,
            ),
            repeat,
        )
    times = {
        "json_decode_ms": _median_ms(lambda: orjson.loads(body), repeat),
        "features_ms": _median_ms(lambda: core.encode(request), repeat),
        "forward_ms": forward,
        "score_ms": _median_ms(lambda: core.score([encoded]), repeat),
        "rank_ms": _median_ms(lambda: core.finish(encoded, scores), repeat),
        "json_encode_ms": _median_ms(lambda: orjson.dumps({"predictions": [result]}), repeat),
        "request_bytes_in_out_ms": _median_ms(lambda: core.rank_json(body), repeat),
    }
    times["request_over_forward"] = times["request_bytes_in_out_ms"] / times["forward_ms"]
    return times


def run(model_dir: Path, candidates: int = 1000, repeat: int = 50, precision: str = "fp32") -> dict[str, Any]:
    core = RankingCore.from_dir(
        model_dir, CoreSettings(precision=precision, cache_entries=0, max_candidates=max(candidates, 1000))
    )
    return {"candidates": candidates, "precision": core.precision, **stage_times(core, candidates, repeat)}
