"""`python -m devcluster.nodes.agent --kubeconfig K --root D --storage S --server-image IMG`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from devcluster.common.informer import api_client
from devcluster.nodes.agent.agent import NodeAgent
from devcluster.nodes.agent.launch import Node
from devcluster.nodes.specs import PROCESS_NODES


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devcluster.nodes.agent", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True, type=Path, help="pods' folders (volumes, logs)")
    parser.add_argument("--storage", required=True, type=Path, help="the object store s3:// and gs:// resolve into")
    parser.add_argument("--server-image", action="append", required=True, help="repositories whose entrypoint is here")
    parser.add_argument("--bin-dir", type=Path, default=Path(sys.executable).parent)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = Node(bin_dir=args.bin_dir, storage_root=args.storage, server_images=tuple(args.server_image))
    agent = NodeAgent(api_client(args.kubeconfig), list(enumerate(PROCESS_NODES, start=1)), node, args.root)
    agent.run(stop)


if __name__ == "__main__":
    main()
