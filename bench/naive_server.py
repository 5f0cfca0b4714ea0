"""The naive baseline: a plain HTTP server that parses with the standard json module and
scores one candidate at a time through the model (the approach of our seed material).

`python -m bench.naive_server --model-dir DIR --port P` (binds 127.0.0.1)."""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from recmodel_handlers.model.features import FeatureEncoder
from recmodel_handlers.model.package import load_package


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    package = load_package(args.model_dir)
    model = package.model
    encoder = FeatureEncoder(package.schema, package.stats, max_candidates=100_000)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            self._reply(200, b'{"ready": true}')

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            predictions = []
            for doc in body["instances"]:
                scored = []
                for candidate in doc["candidates"]:  # one forward pass per candidate
                    one = encoder.encode({**doc, "candidates": [candidate]})
                    with torch.no_grad():
                        user = model.user_tower(
                            one.user.user, one.user.segment, one.user.device, one.user.query, one.user.dense
                        )
                        logit = model.scorer(
                            user,
                            one.candidates.item,
                            one.candidates.category,
                            one.candidates.brand,
                            one.candidates.dense,
                        )
                    scored.append((float(torch.sigmoid(logit)[0]), candidate["id"]))
                scored.sort(reverse=True)
                top = doc.get("topK", 50)
                predictions.append({"items": [{"id": i, "score": s} for s, i in scored[:top]]})
            self._reply(200, json.dumps({"predictions": predictions}).encode())

        def _reply(self, code: int, payload: bytes) -> None:
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
