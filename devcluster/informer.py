"""A small threaded informer for the devcluster's own controllers (node agent, ingress
controller): list, then watch from the list's resourceVersion, relist when the watch expires
(410) or breaks. Objects stay plain dicts, as the API server sends them."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config

log = logging.getLogger("devcluster.informer")

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
Handler = Callable[[str, Obj], None]  # event type (ADDED, MODIFIED, DELETED), object


def api_client(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def _headers(api: client.ApiClient, content_type: str | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    token = api.configuration.api_key.get("authorization")
    if token:
        headers["Authorization"] = token
    return headers


def _url(api: client.ApiClient, path: str, query: dict[str, str] | None) -> str:
    return str(api.configuration.host) + path + (f"?{urllib.parse.urlencode(query)}" if query else "")


def request(
    api: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
    timeout: float = 10,
) -> Any:
    """One API call through the client's connection pool (its TLS and credentials); the parsed
    JSON answer. Raises client.ApiException with the server's message."""
    response = api.rest_client.pool_manager.request(
        method,
        _url(api, path, query),
        body=None if body is None else json.dumps(body).encode(),
        headers=_headers(api, content_type if body is not None else None),
        timeout=urllib3.Timeout(total=timeout),
    )
    if response.status >= 400:
        raise client.ApiException(status=response.status, reason=response.data.decode(errors="replace")[:500])
    return json.loads(response.data) if response.data else None


def key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Informer:
    """Keeps every object under `path` (e.g. /apis/networking.k8s.io/v1/ingresses) matching the
    selectors in memory and calls `on_change` for each change, from its own thread."""

    def __init__(
        self,
        api: client.ApiClient,
        path: str,
        on_change: Handler,
        *,
        field_selector: str = "",
        label_selector: str = "",
    ) -> None:
        self.api = api
        self.path = path
        self.on_change = on_change
        self.selectors = {k: v for k, v in (("fieldSelector", field_selector), ("labelSelector", label_selector)) if v}
        self.objects: dict[Key, Obj] = {}
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer {path}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> list[Obj]:
        return list(self.objects.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                version = self._list()
                self.synced.set()
                self._watch(version)
            except Exception as error:  # an informer outlives API hiccups
                log.warning("%s: %s; listing again", self.path, error)
                time.sleep(1)

    def _list(self) -> str:
        listing = request(self.api, "GET", self.path, query=self.selectors, timeout=30)
        kind = listing.get("kind", "").removesuffix("List")
        fresh = {}
        for item in listing["items"]:
            item.setdefault("kind", kind)
            fresh[key(item)] = item
        for gone in set(self.objects) - set(fresh):
            self.on_change("DELETED", self.objects.pop(gone))
        for k, item in fresh.items():
            known = self.objects.get(k)
            self.objects[k] = item
            if known is None:
                self.on_change("ADDED", item)
            elif known["metadata"]["resourceVersion"] != item["metadata"]["resourceVersion"]:
                self.on_change("MODIFIED", item)
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        query = {
            **self.selectors,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "240",
        }
        response = self.api.rest_client.pool_manager.request(
            "GET",
            _url(self.api, self.path, query),
            headers=_headers(self.api),
            timeout=urllib3.Timeout(connect=10, read=300),
            preload_content=False,
        )
        try:
            for line in response:
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self.objects.pop(key(obj), None)
                else:
                    self.objects[key(obj)] = obj
                self.on_change(kind, obj)
        finally:
            response.release_conn()
