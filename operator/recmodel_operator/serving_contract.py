"""The model server's command line as the operator renders it.

This is one half of the contract with `recmodel_handlers.cli` (the other distribution); a
test parses these exact arguments with the handlers' own parser. Keep the two in step.
"""

from __future__ import annotations

from recmodel_operator.spec import RecModelSpec

SERVE_COMMAND = ("recmodel", "serve")


ENV_PREFIX = "RECMODEL_"


def tuning_settings(spec: RecModelSpec) -> dict[str, str]:
    """Settings of the ranking core by flag name, the same for every role and runtime."""
    return {
        "precision": spec.optimization.precision,
        "compile": "true" if spec.optimization.compile else "false",
        "max-quality-drop": str(spec.optimization.max_quality_drop),
        "max-batch-size": str(spec.batching.max_batch_size),
        "max-latency-ms": str(spec.batching.max_latency_ms),
        "cache-entries": str(spec.cache.max_entries),
        "cache-ttl-seconds": str(spec.cache.ttl_seconds),
        "top-k": str(spec.ranking.top_k),
        "max-candidates": str(spec.ranking.max_candidates),
        "max-request-candidates": str(spec.ranking.max_request_candidates),
        "retrieval": "true" if spec.retrieval.enabled else "false",
        "retrieval-candidates": str(spec.retrieval.candidates),
    }


def server_settings(spec: RecModelSpec) -> dict[str, str]:
    """Limits of `recmodel serve` itself (recmodel_handlers.settings.ServerSettings)."""
    return {
        "max-body-bytes": str(spec.server.max_body_bytes),
        "max-queue": str(spec.server.max_queue),
        "max-queue-ms": str(spec.server.max_queue_ms),
        "request-timeout-ms": str(spec.server.request_timeout_ms),
        "drain-seconds": str(spec.server.drain_seconds),
        "max-headers": str(spec.server.max_headers),
        "max-header-bytes": str(spec.server.max_header_bytes),
        "header-timeout-ms": str(spec.server.header_timeout_ms),
        "body-timeout-ms": str(spec.server.body_timeout_ms),
        "max-connections": str(spec.server.max_connections),
    }


def tuning_args(spec: RecModelSpec) -> list[str]:
    """The settings as `recmodel serve` flags."""
    settings = tuning_settings(spec) | server_settings(spec)
    return [f"--{flag}={value}" for flag, value in settings.items()]


def tuning_env(spec: RecModelSpec) -> list[dict[str, str]]:
    """The settings as environment variables, for the TorchServe handler (TorchServe passes no args)."""
    return [
        {"name": ENV_PREFIX + flag.upper().replace("-", "_"), "value": value}
        for flag, value in tuning_settings(spec).items()
    ]


def serve_args(spec: RecModelSpec, *, name: str, model_dir: str, port: int, role: str = "all") -> list[str]:
    """Full argv after the command, for containers the operator writes itself."""
    return [
        f"--model-dir={model_dir}",
        f"--name={name}",
        "--host=0.0.0.0",
        f"--http-port={port}",
        f"--role={role}",
        *tuning_args(spec),
    ]


def runtime_args(model_dir: str, port: int) -> list[str]:
    """The ClusterServingRuntime's container args; KServe appends the model's own args."""
    return [*SERVE_COMMAND, f"--model-dir={model_dir}", "--name={{.Name}}", "--host=0.0.0.0", f"--http-port={port}"]
