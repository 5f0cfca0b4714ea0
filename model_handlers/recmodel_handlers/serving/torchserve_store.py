"""`recmodel package --torchserve OUT`: a TorchServe model store laid out as KServe's
TorchServe runtime expects it (OUT/model-store/*.mar, OUT/config/config.properties)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from recmodel_handlers.model.package import MANIFEST, load_package, package_files

HANDLER_SOURCE = '''"""Entry point TorchServe imports from the .mar; the handler lives in recmodel_handlers."""
from recmodel_handlers.serving.torchserve_handler import RecModelHandler


class Handler(RecModelHandler):
    pass
'''


def mar_version(version: str) -> str:
    """The .mar's version; config.properties must key the model's settings by exactly this
    string, or TorchServe ignores them (it then runs its defaults: batch 1, 100 ms delay)."""
    return version.lstrip("v") or "1"


def render_config(
    *,
    model_name: str,
    model_version: str,
    max_batch_size: int,
    max_latency_ms: int,
    workers: int,
    inference_address: str,
    model_store: str,
) -> str:
    """config.properties: inference on the pod's port, management and metrics on loopback only."""
    models = {
        model_name: {
            mar_version(model_version): {
                "defaultVersion": True,
                "marName": f"{model_name}.mar",
                "minWorkers": workers,
                "maxWorkers": workers,
                "batchSize": max_batch_size,
                "maxBatchDelay": max_latency_ms,
                "responseTimeout": 60,
            }
        }
    }
    lines = {
        "inference_address": inference_address,
        "management_address": "http://127.0.0.1:8081",
        "metrics_address": "http://127.0.0.1:8082",
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "model_store": model_store,
        "load_models": "all",
        "models": json.dumps(models),
        "disable_token_authorization": "true",
        "enable_envvars_config": "true",
        "install_py_dep_per_model": "false",
        "metrics_mode": "prometheus",
        "default_response_timeout": "60",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def build_model_store(
    model_dir: Path,
    out: Path,
    *,
    max_batch_size: int = 32,
    max_latency_ms: int = 5,
    workers: int = 1,
    inference_address: str = "http://0.0.0.0:8080",
    model_store: str | None = None,
    bundle_model: bool = True,
) -> Path:
    """The .mar and config.properties. Without `bundle_model` the archive holds only the
    handler and the manifest: the workers read the model from RECMODEL_MODEL_DIR (large models)."""
    package = load_package(model_dir)  # refuse to package a broken model
    store = out / "model-store"
    config_dir = out / "config"
    store.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        handler = Path(tmp) / "handler.py"
        handler.write_text(HANDLER_SOURCE)
        files = package_files(model_dir) if bundle_model else [model_dir / MANIFEST]
        extra = ",".join(str(path) for path in files)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "model_archiver.model_packaging",
                f"--model-name={package.name}",
                f"--version={mar_version(package.version)}",
                f"--handler={handler}",
                f"--extra-files={extra}",
                f"--export-path={store}",
                "--force",
            ],
            check=True,
        )
    (config_dir / "config.properties").write_text(
        render_config(
            model_name=package.name,
            model_version=package.version,
            max_batch_size=max_batch_size,
            max_latency_ms=max_latency_ms,
            workers=workers,
            inference_address=inference_address,
            model_store=model_store or "/mnt/models/model-store",
        )
    )
    return out
