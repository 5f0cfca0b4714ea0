"""`python -m devcluster.addons.ingress --kubeconfig K --nginx BIN --run-dir D --port P`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from devcluster.addons.ingress.controller import IngressController
from devcluster.common.informer import api_client


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devcluster.addons.ingress", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nginx", required=True, type=Path)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller = IngressController(api_client(args.kubeconfig), args.nginx, args.run_dir, args.host, args.port)
    controller.run(stop)


if __name__ == "__main__":
    main()
