"""The one place that talks to the Kubernetes API (everything else is pure or reads the cache).

Requests go straight to known REST paths (`kinds.py`): no discovery on the request path, and
every request has a timeout, so a hung connection fails the call instead of holding a worker.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config

from recmodel_operator import FIELD_MANAGER
from recmodel_operator.kinds import EVENT, RECMODEL, ChildKind, kind_of

Obj = dict[str, Any]

API_TIMEOUT = float(os.environ.get("RECMODEL_API_TIMEOUT_SECONDS", "30"))
CONNECT_TIMEOUT = 5.0
USER_AGENT = "recmodel-operator/0.1.0"
PAGE_SIZE = 500
STALLED = "WatchStalled"


class ApiError(Exception):
    """An API request that did not succeed: the server's own message, and whether to retry."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def temporary(self) -> bool:
        """Network trouble, overload, server errors and write races are worth another try."""
        if self.message.startswith("failed to create typed patch object"):
            return False  # the API server's 500 for an apply body that does not fit the schema
        return self.status in (0, 409, 429) or self.status >= 500

    @property
    def namespace_terminating(self) -> bool:
        return self.status == 403 and "because it is being terminated" in self.message

    @property
    def stalled(self) -> bool:
        """A watch that stopped receiving (no event, no bookmark) although its connection is open."""
        return self.reason == STALLED

    @property
    def not_found(self) -> bool:
        return self.status == 404


@dataclass(frozen=True)
class Page:
    items: list[Obj]
    resource_version: str


def load_client_config() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    # Watches hold a connection each; workers need their own beside them.
    configuration.connection_pool_maxsize = 32
    api_client = client.ApiClient(configuration)
    api_client.user_agent = USER_AGENT
    return api_client


def _error_from(status: int, reason: str, data: bytes) -> ApiError:
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        body = {}
    message = str(body.get("message") or reason) if isinstance(body, dict) else reason
    return ApiError(status, str(body.get("reason") or reason) if isinstance(body, dict) else reason, message)


def _selectors(label_selector: str, field_selector: str) -> list[tuple[str, str]]:
    return [
        (name, value) for name, value in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if value
    ]


class Kube:
    """Typed-enough access to the API; `requests` counts what this process sent, by verb."""

    def __init__(
        self, api_client: client.ApiClient | None = None, on_request: Callable[[str], None] | None = None
    ) -> None:
        self._api = api_client or load_client_config()
        # One try per request: a timeout must fail the call (urllib3 would otherwise try it 4
        # times); the work queue retries with backoff.
        pool = self._api.rest_client.pool_manager
        pool.connection_pool_kw["retries"] = False
        pool.clear()
        self._lock = threading.Lock()
        self._on_request = on_request
        self.requests: Counter[str] = Counter()

    def _count(self, verb: str) -> None:
        with self._lock:
            self.requests[verb] += 1
        if self._on_request is not None:
            self._on_request(verb)

    def _send(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] | None = None,
        stream: bool = False,
    ) -> Any:
        self._count(verb)
        timeout = timeout or (CONNECT_TIMEOUT, API_TIMEOUT)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self._api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self._api.call_api(*serialized, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError, client.ApiException) as error:
            raise ApiError(0, type(error).__name__, f"{method} {path}: {error}") from error
        if stream:
            if response.status >= 300:
                raise _error_from(response.status, str(response.reason), response.read())
            return response.response
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, type(error).__name__, f"{method} {path}: {error}") from error
        if response.status >= 300:
            raise _error_from(response.status, str(response.reason), data)
        return json.loads(data) if data else {}

    # -- writes ---------------------------------------------------------------------------------

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply under our one field manager: fields we stop sending are removed."""
        kind = kind_of(obj)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        path = kind.path(obj["metadata"].get("namespace"), obj["metadata"]["name"])
        result: Obj = self._send(
            "PATCH",
            path,
            verb="apply-dry-run" if dry_run else "apply",
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        return result

    def json_patch(self, kind: ChildKind, namespace: str | None, name: str, operations: list[Obj]) -> Obj:
        result: Obj = self._send(
            "PATCH",
            kind.path(namespace, name),
            verb="patch",
            query=[("fieldManager", FIELD_MANAGER)],
            body=operations,
            content_type="application/json-patch+json",
        )
        return result

    def delete(self, kind: ChildKind, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Deletes (in the background); gone already is fine. With `uid`, only that very object."""
        body: Obj = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._send("DELETE", kind.path(namespace, name), verb="delete", body=body)
        except ApiError as error:
            if not (error.not_found or error.status == 409):
                raise

    def patch_recmodel_status(self, namespace: str, name: str, status: Obj) -> Obj:
        result: Obj = self._send(
            "PATCH",
            RECMODEL.path(namespace, name) + "/status",
            verb="patch-status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return result

    def patch_recmodel(self, namespace: str, name: str, patch: Obj) -> Obj:
        """A JSON merge patch of a RecModel itself (the canary's promotion edits its spec)."""
        result: Obj = self._send(
            "PATCH",
            RECMODEL.path(namespace, name),
            verb="patch",
            body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    def create(self, kind: ChildKind, namespace: str | None, obj: Obj) -> Obj:
        result: Obj = self._send("POST", kind.path(namespace), verb="create", body=obj)
        return result

    def replace(self, kind: ChildKind, namespace: str | None, name: str, obj: Obj) -> Obj:
        result: Obj = self._send("PUT", kind.path(namespace, name), verb="update", body=obj)
        return result

    def event(self, involved: Obj, *, type_: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event about a RecModel (what `kubectl describe` shows)."""
        meta = involved["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", RECMODEL.api_version),
                "kind": involved.get("kind", RECMODEL.kind),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": os.environ.get("HOSTNAME", FIELD_MANAGER),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.create(EVENT, meta["namespace"], event)

    # -- reads (the informers; reconciles read their cache) -------------------------------------

    def get(self, kind: ChildKind, namespace: str | None, name: str) -> Obj | None:
        try:
            result: Obj = self._send("GET", kind.path(namespace, name), verb="get")
        except ApiError as error:
            if error.not_found:
                return None
            raise
        return result

    def list(
        self, kind: ChildKind, namespace: str | None = None, label_selector: str = "", field_selector: str = ""
    ) -> Page:
        """Every object (paged), and the resourceVersion to watch from."""
        items: list[Obj] = []
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE)), *_selectors(label_selector, field_selector)]
            if token:
                query.append(("continue", token))
            page = self._send("GET", kind.path(namespace), verb="list", query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", kind.api_version)
                item.setdefault("kind", kind.kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return Page(items, str((page.get("metadata") or {}).get("resourceVersion", "")))

    def watch(
        self,
        kind: ChildKind,
        resource_version: str,
        *,
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        silence_seconds: float = 330,
    ) -> Iterator[Obj]:
        """Watch events from `resource_version` until the server ends the watch (after
        `timeout_seconds`). A connection that stays silent for `silence_seconds` (no event,
        no bookmark) raises `ApiError` with `stalled` set."""
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
            *_selectors(label_selector, field_selector),
        ]
        response = self._send(
            "GET",
            kind.path(),
            verb="watch",
            query=query,
            timeout=(CONNECT_TIMEOUT, silence_seconds),
            stream=True,
        )
        buffer = b""
        try:
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except urllib3.exceptions.ReadTimeoutError as error:
            raise ApiError(0, STALLED, f"watch {kind.plural}: nothing received for {silence_seconds:.0f}s") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ApiError(0, type(error).__name__, f"watch {kind.plural}: {error}") from error
        finally:
            response.release_conn()
