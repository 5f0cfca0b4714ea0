"""What every peer serves: our ranking core over a batch of requests, in one forward pass."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from recmodel_handlers.ranking.core import RankingCore, tune_for_serving
from recmodel_handlers.settings import CoreSettings

Doc = dict[str, Any]


def load_core(model_dir: str, settings: CoreSettings, threads: int) -> RankingCore:
    """One replica's core; `threads` torch threads (peers run one replica or instance per core)."""
    torch.set_num_threads(threads)
    core = RankingCore.from_dir(model_dir, settings)
    tune_for_serving()
    return core


def rank_requests(core: RankingCore, requests: list[list[Any]]) -> list[list[Doc]]:
    """Each request's documents ranked; all documents of all requests scored together."""
    flat = [doc for docs in requests for doc in docs]
    ranked = core.rank(flat)
    out, start = [], 0
    for docs in requests:
        out.append(ranked[start : start + len(docs)])
        start += len(docs)
    return out


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=2, help="replicas (Ray) or model instances (Triton)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    CoreSettings.add_arguments(parser)
    return parser
