"""Triton peer through PyTriton: our ranking core bound as a Triton model with dynamic
batching and one model instance per core (PyTriton's guidance for throughput), a BYTES input
`request` (one ranking document as JSON) and a BYTES output `result`.

    LD_LIBRARY_PATH=<the interpreter's libdir> .venv-peers/bin/python -m bench.peers.triton_server --model-dir DIR --port 8000

PyTriton's Python backend stub links the system's libpython3.11 (3.11.2 on Debian 12); it
must load the interpreter's own (3.11.7 here), whose standard library it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.peers.batch import load_core, rank_requests, triton_arguments
from recmodel_handlers.settings import CoreSettings


def instance(model_dir: str, settings: CoreSettings) -> Callable[..., dict[str, np.ndarray]]:
    core = load_core(model_dir, settings, threads=1)

    @batch
    def infer(request: np.ndarray) -> dict[str, np.ndarray]:
        requests = [[orjson.loads(row[0])] for row in request]
        results = [orjson.dumps(ranked[0]) for ranked in rank_requests(core, requests)]
        return {"result": np.array(results, dtype=np.object_).reshape(-1, 1)}

    return infer  # type: ignore[no-any-return]


def main() -> None:
    args = triton_arguments(__doc__ or "").parse_args()
    settings = CoreSettings.from_namespace(args)
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        allow_metrics=False,
    )
    instances: list[Any] = [instance(args.model_dir, settings) for _ in range(args.replicas)]
    with Triton(config=config) as triton:
        triton.bind(
            model_name="ranker",
            infer_func=instances,
            inputs=[Tensor(name="request", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="result", dtype=bytes, shape=(1,))],
            config=ModelConfig(
                max_batch_size=settings.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(args.batch_wait_ms * 1000)),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
