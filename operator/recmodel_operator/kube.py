"""The one place that talks to the Kubernetes API (everything else is pure)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from recmodel_operator import FIELD_MANAGER, GROUP, VERSION
from recmodel_operator.render.desired import ChildKind

Obj = dict[str, Any]


class KindNotInstalled(Exception):
    """The cluster does not serve this kind (its CRD is missing)."""


def load_client_config() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    """Typed-enough access to the API, counting every request it makes."""

    def __init__(
        self, api_client: client.ApiClient | None = None, on_request: Callable[[str], None] | None = None
    ) -> None:
        self._dynamic = dynamic.DynamicClient(api_client or load_client_config())
        self._lock = threading.Lock()
        self._on_request = on_request
        self.requests: Counter[str] = Counter()

    def _count(self, verb: str) -> None:
        with self._lock:
            self.requests[verb] += 1
        if self._on_request is not None:
            self._on_request(verb)

    def _resource(self, kind: ChildKind) -> Any:
        try:
            return self._dynamic.resources.get(api_version=kind.api_version, kind=kind.kind)
        except ResourceNotFoundError:
            # A CRD installed after we started: look again before giving up.
            self._dynamic.resources.invalidate_cache()
            try:
                return self._dynamic.resources.get(api_version=kind.api_version, kind=kind.kind)
            except ResourceNotFoundError as error:
                raise KindNotInstalled(f"{kind.kind} ({kind.api_version})") from error

    def serves(self, kind: ChildKind) -> bool:
        try:
            self._resource(kind)
        except KindNotInstalled:
            return False
        return True

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply under our one field manager; conflicts are ours to win."""
        resource = self._resource(ChildKind(obj["apiVersion"], obj["kind"]))
        self._count("apply-dry-run" if dry_run else "apply")
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
        if dry_run:
            kwargs["dry_run"] = "All"
        result = resource.server_side_apply(
            body=obj, name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"), **kwargs
        )
        return dict(result.to_dict())

    def get(self, kind: ChildKind, namespace: str, name: str) -> Obj | None:
        resource = self._resource(kind)
        self._count("get")
        try:
            return dict(resource.get(name=name, namespace=namespace).to_dict())
        except NotFoundError:
            return None

    def list(self, kind: ChildKind, namespace: str | None = None, label_selector: str = "") -> list[Obj]:
        resource = self._resource(kind)
        self._count("list")
        result = resource.get(namespace=namespace, label_selector=label_selector)
        return [dict(item) for item in result.to_dict().get("items", [])]

    def delete(self, kind: ChildKind, namespace: str, name: str) -> None:
        resource = self._resource(kind)
        self._count("delete")
        with contextlib.suppress(NotFoundError):
            resource.delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})

    def patch_recmodel_status(self, namespace: str, name: str, status: Obj) -> None:
        resource = self._resource(ChildKind(f"{GROUP}/{VERSION}", "RecModel"))
        self._count("patch-status")
        resource.status.patch(
            name=name,
            namespace=namespace,
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def get_recmodel(self, namespace: str, name: str) -> Obj | None:
        return self.get(ChildKind(f"{GROUP}/{VERSION}", "RecModel"), namespace, name)


def api_error_message(error: ApiException) -> str:
    """The API server's own message (its Status body), not the HTTP wrapper."""
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        return str(error.reason)
    return str(body.get("message") or error.reason)
