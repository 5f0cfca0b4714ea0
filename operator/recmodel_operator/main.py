"""`recmodel-operator`: runs the operator against the current KUBECONFIG (or in-cluster)."""

from __future__ import annotations

import argparse
import logging
import os

import kopf
from prometheus_client import start_http_server

from recmodel_operator import handlers
from recmodel_operator.handlers import Options
from recmodel_operator.prometheus import PrometheusReader
from recmodel_operator.reconcile import Settings
from recmodel_operator.render.autoscaling import DEFAULT_PROMETHEUS_URL
from recmodel_operator.render.context import DEFAULT_SERVER_IMAGE


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="recmodel-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument("--metrics-host", default=env("RECMODEL_METRICS_HOST", "0.0.0.0"))
    parser.add_argument("--metrics-port", type=int, default=int(env("RECMODEL_METRICS_PORT", "8000")))
    parser.add_argument(
        "--health-endpoint",
        default=env("RECMODEL_HEALTH_ENDPOINT", "http://0.0.0.0:8080/healthz"),
        help="kopf liveness endpoint",
    )
    parser.add_argument("--server-image", default=env("RECMODEL_SERVER_IMAGE", DEFAULT_SERVER_IMAGE))
    parser.add_argument("--prometheus-url", default=env("RECMODEL_PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL))
    parser.add_argument("--ingress-domain", default=env("RECMODEL_INGRESS_DOMAIN", "example.com"))
    parser.add_argument("--workers", type=int, default=int(env("RECMODEL_WORKERS", "4")), help="parallel reconciles")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(env("RECMODEL_RESYNC_SECONDS", "300")),
        help="safety-net resync of every RecModel (changes arrive through watches)",
    )
    parser.add_argument(
        "--stuck-seconds",
        type=float,
        default=float(env("RECMODEL_STUCK_SECONDS", "120")),
        help="a reconcile running longer fails the liveness probe",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=env("RECMODEL_LEADER_ELECTION", "true") == "true",
        help="only the holder of a Lease reconciles (run two replicas for high availability)",
    )
    parser.add_argument("--lease-namespace", default=env("POD_NAMESPACE", "default"))
    parser.add_argument("--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    settings = Settings(
        server_image=args.server_image,
        prometheus_url=args.prometheus_url,
        ingress_domain=args.ingress_domain,
        metrics=PrometheusReader(args.prometheus_url),
    )
    handlers.configure(
        Options(
            settings=settings,
            workers=args.workers,
            resync_seconds=args.resync_seconds,
            stuck_seconds=args.stuck_seconds,
            leader_election=args.leader_election,
            lease_namespace=args.lease_namespace,
        )
    )
    start_http_server(args.metrics_port, addr=args.metrics_host)
    kopf.run(
        standalone=True,  # replicas coordinate through a Lease (leader.py), not kopf peering
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.health_endpoint,
    )


if __name__ == "__main__":
    main()
