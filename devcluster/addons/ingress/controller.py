"""The controller loop: informers wake it, it renders nginx.conf (the Ingresses' routes to the
ready endpoints of their Services), and when that changed it checks the file with `nginx -t` and
reloads nginx (SIGHUP: old workers finish their requests).
It also writes the Ingresses' status (their address), as every ingress controller does."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

from kubernetes import client

from devcluster.addons.ingress.routes import is_ours, nginx_conf, routes
from devcluster.common.informer import ENDPOINT_SLICES, INGRESSES, SERVICES, Informer, request

log = logging.getLogger("devcluster.addons.ingress")

DEBOUNCE_SECONDS = 0.05


class IngressController:
    def __init__(self, api: client.ApiClient, nginx: Path, run_dir: Path, host: str, port: int) -> None:
        self.api = api
        self.nginx = nginx
        self.run_dir = run_dir
        self.host, self.port = host, port
        self.conf = run_dir / "nginx.conf"
        self._dirty = threading.Event()
        wake = lambda _kind, _obj: self._dirty.set()  # noqa: E731
        self.informers = [
            Informer(api, INGRESSES, wake),
            Informer(api, SERVICES, wake),
            Informer(api, ENDPOINT_SLICES, wake),
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self._announced: dict[tuple[str, str], str] = {}

    def _render(self) -> str:
        ingresses, services, slices = (i.snapshot() for i in self.informers)
        found = routes(ingresses, services, slices)
        summary = ", ".join(f"{r.host or '*'}{r.path} -> {len(r.upstreams)}" for r in found) or "none"
        log.info("routes: %s", summary)
        return nginx_conf(found, f"{self.host}:{self.port}", self.run_dir)

    def _nginx(self, *args: str) -> list[str]:
        return [str(self.nginx), "-p", str(self.run_dir), "-c", str(self.conf), *args]

    def _apply(self, text: str) -> None:
        candidate = self.run_dir / "nginx.conf.next"
        candidate.write_text(text)
        checked = subprocess.run(
            [str(self.nginx), "-p", str(self.run_dir), "-c", str(candidate), "-t", "-q"],
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode != 0:
            log.error("rendered configuration refused by nginx -t, keeping the last one: %s", checked.stderr.strip())
            return
        candidate.replace(self.conf)
        if self._process is None:
            self._process = subprocess.Popen(self._nginx("-g", "daemon off;"))  # in our process group
        else:
            os.kill(self._process.pid, signal.SIGHUP)

    def _announce(self) -> None:
        """status.loadBalancer of our Ingresses: where the controller listens."""
        address = [{"ip": self.host, "ports": [{"port": self.port, "protocol": "TCP"}]}]
        for ingress in self.informers[0].snapshot():
            meta = ingress["metadata"]
            ident = (meta["namespace"], meta["name"])
            if not is_ours(ingress) or self._announced.get(ident) == meta["uid"]:
                continue
            if ingress.get("status", {}).get("loadBalancer", {}).get("ingress") != address:
                path = f"/apis/networking.k8s.io/v1/namespaces/{ident[0]}/ingresses/{ident[1]}/status"
                try:
                    request(
                        self.api,
                        "PATCH",
                        path,
                        {"status": {"loadBalancer": {"ingress": address}}},
                        content_type="application/merge-patch+json",
                    )
                except client.ApiException as error:
                    log.warning("status of ingress %s/%s: %s", *ident, error.reason)
                    continue
            self._announced[ident] = meta["uid"]

    def run(self, stop: threading.Event) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.run_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            informer.synced.wait()
        current = ""
        try:
            while not stop.is_set():
                text = self._render()
                if text != current:
                    self._apply(text)
                    current = text
                self._announce()
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"nginx exited with {self._process.returncode}")
                self._dirty.wait(timeout=5)
                stop.wait(DEBOUNCE_SECONDS)  # a burst of events (a rollout) becomes one reload
                self._dirty.clear()
        finally:
            if self._process is not None and self._process.poll() is None:
                self._process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
