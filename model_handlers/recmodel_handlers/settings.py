"""Settings of the ranking core, from `recmodel serve` flags or RECMODEL_* environment variables.

The operator renders both from one table (recmodel_operator.serving_contract); the names
here are that contract's other half.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar, Self

ENV_PREFIX = "RECMODEL_"


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


class FlagSettings:
    """A frozen dataclass whose fields are command-line flags and RECMODEL_* variables."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

    @staticmethod
    def flag(field_name: str) -> str:
        return field_name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        defaults = cls()
        for f in fields(cls):  # type: ignore[arg-type]
            default = getattr(defaults, f.name)
            kind = parse_bool if isinstance(default, bool) else type(default)
            kwargs: dict[str, object] = {"type": kind, "default": default, "help": f"default {default}"}
            if isinstance(default, bool):
                kwargs |= {"nargs": "?", "const": True}
            if f.name in cls.CHOICES:
                kwargs["choices"] = cls.CHOICES[f.name]
            parser.add_argument(f"--{cls.flag(f.name)}", dest=f.name, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> Self:
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        """RECMODEL_PRECISION=int8 etc.: how TorchServe's handler gets the same settings."""
        parser = argparse.ArgumentParser(add_help=False)
        cls.add_arguments(parser)
        argv = []
        for f in fields(cls):  # type: ignore[arg-type]
            value = environ.get(ENV_PREFIX + f.name.upper())
            if value is not None:
                argv.append(f"--{cls.flag(f.name)}={value}")
        return cls.from_namespace(parser.parse_args(argv))


@dataclass(frozen=True)
class CoreSettings(FlagSettings):
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"precision": ("fp32", "bf16", "fp16", "int8")}

    precision: str = "fp32"
    compile: bool = False
    max_quality_drop: float = 0.01
    max_batch_size: int = 32
    max_latency_ms: float = 5.0
    cache_entries: int = 100_000
    cache_ttl_seconds: float = 300.0
    cache_max_bytes: int = 64 * 2**20
    top_k: int = 50
    max_candidates: int = 1000
    max_request_candidates: int = 10_000  # over all documents of one HTTP request
    retrieval: bool = True  # requests without candidates retrieve them (when the package has an index)
    retrieval_candidates: int = 500  # a request without candidates retrieves this many (`retrieve`)


@dataclass(frozen=True)
class ServerSettings(FlagSettings):
    """What protects one replica: limits on a request, on the work waiting, and shutdown."""

    max_body_bytes: int = 16 * 2**20
    max_headers: int = 100  # headers of one request; more: 431
    max_header_bytes: int = 32 * 2**10  # request line and headers together; more: 431 (414 for the path)
    header_timeout_ms: float = 5_000.0  # from a request's first byte (or a new connection) to its headers' end: 408
    body_timeout_ms: float = 10_000.0  # for the whole body to arrive (before admission); then 408
    max_connections: int = 1024  # open connections; one more is answered 503 and closed at once
    max_queue: int = 8  # inference requests inside the server at once; more get 503 + Retry-After
    max_queue_ms: float = 5.0  # work queued ahead of a request, in time at the measured rate; more: 503
    request_timeout_ms: float = 10_000.0  # default deadline; a request may ask for less
    drain_seconds: float = 5.0  # after SIGTERM: not ready but still serving, then stop
    shadow_url: str = ""  # a canary to mirror requests to (its answers only compared, never returned)
    shadow_percent: float = 0.0  # share of the ranking requests mirrored there
    threads: int = 0  # torch's threads for scoring; 0: torch's default (one per core it sees)
    # Bind with SO_REUSEPORT, so that several replicas on one machine share a port and the
    # kernel spreads connections over them (as a Service spreads them over pods).
    reuse_port: bool = False
