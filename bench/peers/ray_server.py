"""Ray Serve peer: our ranking core in a deployment with `@serve.batch`, set up as Ray's
performance guide recommends for CPU throughput: one replica per core (num_cpus=1, one torch
thread each), dynamic batching, max_ongoing_requests above the batch size, no dashboard.

    .venv-peers/bin/python -m bench.peers.ray_server --model-dir DIR --port 8000
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from bench.peers.batch import load_core, rank_requests, ray_arguments
from recmodel_handlers.ranking import request
from recmodel_handlers.settings import CoreSettings


def deployment(model_dir: str, settings: CoreSettings, replicas: int, batch_wait_ms: float) -> Any:
    @serve.deployment(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}}},
        max_ongoing_requests=4 * settings.max_batch_size,
    )
    class Ranker:
        def __init__(self) -> None:
            self.core = load_core(model_dir, settings, threads=1)

        @serve.batch(max_batch_size=settings.max_batch_size, batch_wait_timeout_s=batch_wait_ms / 1000)
        async def rank(self, bodies: list[bytes]) -> list[bytes]:
            limit = settings.max_request_candidates
            requests = [request.decode(body, limit).docs for body in bodies]
            return [request.v1_response(ranked) for ranked in rank_requests(self.core, requests)]

        async def __call__(self, request: Request) -> Response:
            if request.method == "GET":
                return Response(b"ok")  # readiness: the deployment is up and its core loaded
            return Response(await self.rank(await request.body()), media_type="application/json")

    return Ranker.bind()  # type: ignore[attr-defined]


def main() -> None:
    args = ray_arguments(__doc__ or "").parse_args()
    settings = CoreSettings.from_namespace(args)
    ray.init(num_cpus=args.replicas, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(deployment(args.model_dir, settings, args.replicas, args.batch_wait_ms), route_prefix="/")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
