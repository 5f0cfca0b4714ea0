"""Leader election on a coordination.k8s.io Lease, as client-go does it: one replica reconciles,
the others keep their caches warm and take over when the leader's lease runs out (or at once
when it steps down on shutdown).

Expiry is judged by when *we* last saw the lease record change, never by comparing clocks.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from recmodel_operator.kinds import LEASE
from recmodel_operator.kube import ApiError, Kube

log = logging.getLogger("recmodel.leader")

Obj = dict[str, Any]


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        on_started: Callable[[], None],
        lease_seconds: int = 10,
        renew_seconds: float = 3.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.on_started = on_started
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self.is_leader = threading.Event()
        self._stop = threading.Event()
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renewed = 0.0
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spec(self, lease: Obj | None) -> Obj:
        spec = dict((lease or {}).get("spec") or {})
        now = _micro_now()
        transitions = int(spec.get("leaseTransitions") or 0)
        if spec.get("holderIdentity") != self.identity:
            transitions += 1 if spec.get("holderIdentity") else 0
            spec["acquireTime"] = now
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self.lease_seconds,
            renewTime=now,
            leaseTransitions=transitions,
        )
        return spec

    def _try(self) -> bool:
        """One attempt to acquire or renew; True when we hold the lease afterwards."""
        lease = self.kube.get(LEASE, self.namespace, self.name)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": self.name}}
            self.kube.create(LEASE, self.namespace, {**body, "spec": self._spec(None)})
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = time.monotonic() - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        updated = {**lease, "spec": self._spec(lease)}
        self.kube.replace(LEASE, self.namespace, self.name, updated)  # resourceVersion guards the race
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                held = self._try()
            except ApiError as error:
                if error.status != 409:
                    log.warning(f"lease {self.namespace}/{self.name}: {error}")
                held = False
            now = time.monotonic()
            if held:
                self._last_renewed = now
                if not self.is_leader.is_set():
                    log.info(f"{self.identity} is now the leader (lease {self.namespace}/{self.name})")
                    self.is_leader.set()
                    self.on_started()
            elif self.is_leader.is_set() and now - self._last_renewed > self.lease_seconds - self.retry_seconds:
                log.warning(f"{self.identity} lost the lease {self.namespace}/{self.name}; standing by")
                self.is_leader.clear()
            self._stop.wait(self.renew_seconds if self.is_leader.is_set() else self.retry_seconds)

    def release(self) -> None:
        """Steps down so that a standby takes over at once (on a clean shutdown)."""
        self._stop.set()
        if not self.is_leader.is_set():
            return
        self.is_leader.clear()
        try:
            lease = self.kube.get(LEASE, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                self.kube.replace(LEASE, self.namespace, self.name, {**lease, "spec": spec})
        except ApiError as error:
            log.warning(f"could not release the lease: {error}")
