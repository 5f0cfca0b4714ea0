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


def arguments(description: str = "") -> argparse.ArgumentParser:
    """What every peer server takes (bench/peers/*_server.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=2, help="replicas (Ray) or model instances (Triton)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    CoreSettings.add_arguments(parser)
    return parser


TRITON_PORTS = ("--grpc-port", "--metrics-port")  # Triton's other listeners, each on a free port


def ray_arguments(description: str = "") -> argparse.ArgumentParser:
    return arguments(description)


def triton_arguments(description: str = "") -> argparse.ArgumentParser:
    parser = arguments(description)
    for flag in TRITON_PORTS:
        parser.add_argument(flag, type=int, required=True)
    return parser
