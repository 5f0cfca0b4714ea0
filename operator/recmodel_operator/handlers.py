"""kopf glue: RecModel watch events feed the controller; startup, shutdown and the liveness probe.

No handler here needs a finalizer or kopf's annotations: children go with their RecModel through
ownerReferences, so deleting a RecModel (or its namespace) never waits for the operator.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import kopf

from recmodel_operator import GROUP, PLURAL, VERSION, metrics
from recmodel_operator.controller import Controller
from recmodel_operator.kube import Kube
from recmodel_operator.reconcile import Settings


def default_identity() -> str:
    """Who this replica is in the Lease: its pod's name (the chart passes POD_NAME), which a
    restarted container keeps, so that a restarted leader resumes at once instead of waiting
    out its own old lease (client-go's leader election does the same). Without POD_NAME (several
    operators as processes on one machine, as the tests run them): host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Options:
    settings: Settings = field(default_factory=Settings)
    workers: int = 4
    resync_seconds: float = 300.0
    stuck_seconds: float = 120.0
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "recmodel-operator"
    identity: str = field(default_factory=default_identity)


_state: dict[str, Any] = {"options": Options(), "controller": None}


def configure(options: Options) -> None:
    _state["options"] = options


def controller() -> Controller:
    current: Controller | None = _state["controller"]
    if current is None:
        options: Options = _state["options"]
        lease = (options.lease_namespace, options.lease_name, options.identity) if options.leader_election else None
        current = Controller(
            Kube(on_request=lambda verb: metrics.API_REQUESTS.labels(verb=verb).inc()),
            options.settings,
            workers=options.workers,
            resync_seconds=options.resync_seconds,
            stuck_seconds=options.stuck_seconds,
            lease=lease,
        )
        _state["controller"] = current
    return current


class RetriedIsWarning(logging.Filter):
    """kopf logs each API request it is about to retry at ERROR: a 429 "storage is
    (re)initializing" right after the CRD is installed, a 503 while the API server restarts.
    Those are retried and recover; only a request kopf gives up on ("escalating") is an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name.startswith("kopf")
            and record.levelno == logging.ERROR
            and "; will retry:" in record.getMessage()
        ):
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Only watch-event handlers below: kopf adds no finalizer and writes no annotations.
    settings.posting.enabled = False  # our Events name the child acted on (controller.py)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # kopf logs every handled watch event and every probe at INFO, aiohttp every /healthz request:
    # our own log says what changed, and nothing when nothing did.
    for noisy in ("kopf.objects", "kopf.activities.probe", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:  # kopf passes its own loggers around: filter where they end
        if not any(isinstance(f, RetriedIsWarning) for f in handler.filters):
            handler.addFilter(RetriedIsWarning())
    controller().start()


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    controller().stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def recmodel_event(event: kopf.RawEvent, **_: Any) -> None:
    """Every change of a RecModel goes to the cache; the controller decides whether it needs work."""
    controller().recmodel_event(event.get("type"), dict(event["object"]))


@kopf.on.probe(id="controller", errors=kopf.ErrorsMode.PERMANENT)
def probe(**_: Any) -> dict[str, Any]:
    """Fails (HTTP 500 on /healthz) while a watch or a reconcile is stuck."""
    return controller().health()
