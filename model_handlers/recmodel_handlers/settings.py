"""Settings of the ranking core, from `recmodel serve` flags or RECMODEL_* environment variables.

The operator renders both from one table (recmodel_operator.serving_contract); the names
here are that contract's other half.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

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


@dataclass(frozen=True)
class CoreSettings:
    precision: str = "fp32"
    compile: bool = False
    max_quality_drop: float = 0.01
    max_batch_size: int = 32
    max_latency_ms: float = 5.0
    cache_entries: int = 100_000
    cache_ttl_seconds: float = 300.0
    top_k: int = 50
    max_candidates: int = 1000

    @staticmethod
    def flag(field_name: str) -> str:
        return field_name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        defaults = cls()
        for f in fields(cls):
            default = getattr(defaults, f.name)
            kind = parse_bool if isinstance(default, bool) else type(default)
            kwargs: dict[str, object] = {"type": kind, "default": default, "help": f"default {default}"}
            if isinstance(default, bool):
                kwargs |= {"nargs": "?", "const": True}
            if f.name == "precision":
                kwargs["choices"] = ("fp32", "bf16", "fp16", "int8")
            parser.add_argument(f"--{cls.flag(f.name)}", dest=f.name, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> CoreSettings:
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls)})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CoreSettings:
        """RECMODEL_PRECISION=int8 etc.: how TorchServe's handler gets the same settings."""
        parser = argparse.ArgumentParser(add_help=False)
        cls.add_arguments(parser)
        argv = []
        for f in fields(cls):
            value = environ.get(ENV_PREFIX + f.name.upper())
            if value is not None:
                argv.append(f"--{cls.flag(f.name)}={value}")
        return cls.from_namespace(parser.parse_args(argv))
