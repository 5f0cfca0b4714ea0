"""API access for the devcluster's own controllers (the ingress controller): one call
through the client's connection pool (`request`), and the operator's informer over one kind.
Objects stay plain dicts, as the API server sends them."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config

from recmodel_operator.cache import Cache, Source, no_owner
from recmodel_operator.informer import Informer as OperatorInformer
from recmodel_operator.kinds import INGRESS, SERVICE, ChildKind
from recmodel_operator.kube import Kube

log = logging.getLogger("devcluster.common.informer")

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
    JSON answer. Raises client.ApiException with the server's message, or with status 0 when no
    answer came (a timeout, a refused connection: an API server that stalls or restarts)."""
    try:
        response = api.rest_client.pool_manager.request(
            method,
            _url(api, path, query),
            body=None if body is None else json.dumps(body).encode(),
            headers=_headers(api, content_type if body is not None else None),
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
        )
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise client.ApiException(status=0, reason=f"{method} {path}: {error}") from error
    if response.status >= 400:
        raise client.ApiException(status=response.status, reason=response.data.decode(errors="replace")[:500])
    return json.loads(response.data) if response.data else None


def key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Informer:
    """Keeps every object of `kind` matching the selectors in memory and calls `on_change` for
    each change, from its own thread: the operator's informer (`recmodel_operator.informer`:
    list, watch from the last resourceVersion, relist on 410 or errors, with backoff), so the
    devcluster's controllers and the operator read the cluster the same way."""

    def __init__(
        self,
        api: client.ApiClient,
        kind: ChildKind,
        on_change: Handler,
    ) -> None:
        self.on_change = on_change
        self._cache = Cache()
        self._source = Source(
            name=kind.plural,
            kind=kind,
            owner=no_owner,
            keep=lambda obj: obj,  # the controllers read whole objects
        )
        self._stop = threading.Event()
        self._informer = OperatorInformer(
            Kube(api),
            self._cache,
            self._source,
            self._changed,
            served=lambda _kind: True,  # built-in kinds only
            served_changed=threading.Condition(),
            stop=self._stop,
        )
        self.synced = self._informer.synced

    def _changed(self, _source: Source, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            assert old is not None
            self.on_change("DELETED", old)
        else:
            self.on_change("ADDED" if old is None else "MODIFIED", new)

    def start(self) -> Informer:
        self._informer.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> list[Obj]:
        objects: list[Obj] = self._cache.all(self._source)
        return objects


# The kinds the devcluster's controllers watch.
INGRESSES = INGRESS
SERVICES = SERVICE
ENDPOINT_SLICES = ChildKind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
