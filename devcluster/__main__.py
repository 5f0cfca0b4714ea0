"""`python -m devcluster build|images|up|down|status`."""

from __future__ import annotations

import argparse

from devcluster.build.go import build_all
from devcluster.controlplane import cluster
from devcluster.images import build as images


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    parser.add_argument("command", choices=["build", "images", "up", "down", "status"])
    parser.add_argument(
        "--no-push", action="store_true", help="images: build into the local store only (no registry needed)"
    )
    args = parser.parse_args()
    if args.command == "build":
        print(build_all())
    elif args.command == "images" and args.no_push:
        print("\n".join(images.build_only()))
    elif args.command == "images":
        for built in images.build_all():
            print(built.reference)
    elif args.command == "up":
        found = cluster.up()
        print(f"export KUBECONFIG={found.kubeconfig}")
        if found.prometheus_url:
            print(f"# Prometheus (scrapes what is registered in {found.prometheus_targets}): {found.prometheus_url}")
        if found.ingress_url:
            print(f"# Ingress controller (nginx; send requests with the Ingress's Host): {found.ingress_url}")
    elif args.command == "down":
        cluster.down()
    else:
        running = cluster.is_running()
        found = cluster.info()
        print(f"running at {found.server}; ingress {found.ingress_url}" if running else "not running")
        raise SystemExit(0 if running else 1)


if __name__ == "__main__":
    main()
