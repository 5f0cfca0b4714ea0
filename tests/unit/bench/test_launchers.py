"""The benchmark's servers start with command lines their own parsers accept, checked without
starting one, so a refactor cannot break `make bench` silently (PyTriton's launcher once lost
its --grpc-port and --metrics-port, and nothing ran the benchmark to notice)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ts.arg_parser import ArgParser

from bench.peers.launch import PEERS, Peer
from bench.serving import THROUGHPUT_ARGS, core_args
from devcluster.harness.servers import torchserve_command
from recmodel_handlers.cli import build_parser


def _flags(command: list[str], module: str) -> list[str]:
    assert command[1:3] == ["-m", module], command
    return command[3:]


@pytest.mark.parametrize("peer", PEERS, ids=[peer.module for peer in PEERS])
def test_each_peer_is_launched_with_flags_its_parser_accepts(peer: Peer) -> None:
    ports = list(range(20_000, 20_001 + len(peer.more_ports)))
    command = peer.command(Path("/models/ranker"), core_args("bf16"), ports)
    args = peer.parser().parse_args(_flags(command, peer.module))  # SystemExit (a test error) if refused
    assert args.port == ports[0]
    assert args.model_dir == "/models/ranker"
    assert args.precision == "bf16" and args.max_candidates == 5000
    for flag, port in zip(peer.more_ports, ports[1:], strict=True):
        assert getattr(args, flag.removeprefix("--").replace("-", "_")) == port


def test_our_server_takes_the_benchmarks_settings() -> None:
    args = build_parser().parse_args(["serve", "--model-dir=/m", "--name=ranker", *core_args("int8"), *THROUGHPUT_ARGS])
    assert (args.precision, args.max_queue, args.max_queue_ms) == ("int8", 64, 10_000)


def test_torchserve_is_started_with_flags_it_accepts(tmp_path: Path) -> None:
    args = ArgParser.ts_parser().parse_args(torchserve_command(tmp_path)[1:])
    assert args.start and args.foreground and args.model_store == str(tmp_path / "model-store")
