"""From Ingresses, Services and EndpointSlices to routes, and from routes to nginx.conf (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.common.podnet import on_real_node

Obj = dict[str, Any]

CLASS_NAME = "nginx"
CONTROLLER = "devcluster.recmodel.dev/ingress-nginx"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Route:
    host: str  # "" for every host
    path: str
    exact: bool
    namespace: str
    service: str
    port: str  # the Service port, by name or number
    upstreams: tuple[str, ...]  # ready endpoints as "address:port" (pods on the real nodes)

    @property
    def upstream_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", f"{self.namespace}__{self.service}__{self.port}")


def ingress_class() -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": CLASS_NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER},
    }


def is_ours(ingress: Obj) -> bool:
    """Ingresses of our class; the API server gives class-less ones the default (ours)."""
    return bool(ingress.get("spec", {}).get("ingressClassName") == CLASS_NAME)


def _service_port(service: Obj | None, wanted: dict[str, Any]) -> Obj | None:
    for port in (service or {}).get("spec", {}).get("ports", []):
        if ("name" in wanted and port.get("name") == wanted["name"]) or port.get("port") == wanted.get("number"):
            return dict(port)
    return None


def ready_upstreams(service_port: Obj, slices: list[Obj]) -> tuple[str, ...]:
    """Ready endpoints of the Service port on the real nodes (KWOK's pods have nothing to dial)."""
    name = service_port.get("name", "")
    out: set[str] = set()
    for endpoint_slice in slices:
        ports = [p for p in endpoint_slice.get("ports") or [] if p.get("name", "") == name and p.get("port")]
        if not ports:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses", []):
                if on_real_node(address):
                    out.add(f"{address}:{ports[0]['port']}")
    return tuple(sorted(out))


def slices_by_service(slices: list[Obj]) -> dict[tuple[str, str], list[Obj]]:
    """EndpointSlices by the (namespace, name) of the Service they belong to."""
    out: dict[tuple[str, str], list[Obj]] = {}
    for endpoint_slice in slices:
        meta = endpoint_slice["metadata"]
        owner = meta.get("labels", {}).get(SERVICE_NAME_LABEL)
        if owner:
            out.setdefault((meta["namespace"], owner), []).append(endpoint_slice)
    return out


def _age(ingress: Obj) -> tuple[str, str, str]:
    meta = ingress["metadata"]
    return str(meta.get("creationTimestamp", "")), meta.get("namespace", ""), meta["name"]


def routes(ingresses: list[Obj], services: list[Obj], slices: list[Obj]) -> list[Route]:
    by_service = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    slices_of = slices_by_service(slices)
    out = []
    taken: set[tuple[str, str, bool]] = set()
    # The same host and path in two Ingresses: the oldest one keeps it (as ingress-nginx does).
    for ingress in sorted(ingresses, key=_age):
        if not is_ours(ingress):
            continue
        namespace = ingress["metadata"]["namespace"]
        for rule in ingress.get("spec", {}).get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path.get("backend", {}).get("service")
                if not backend:
                    continue
                wanted = backend.get("port", {})
                port = _service_port(by_service.get((namespace, backend["name"])), wanted)
                upstreams = ready_upstreams(port, slices_of.get((namespace, backend["name"]), [])) if port else ()
                claim = (rule.get("host", ""), path.get("path", "/") or "/", path.get("pathType") == "Exact")
                if claim in taken:
                    continue
                taken.add(claim)
                out.append(
                    Route(
                        host=rule.get("host", ""),
                        path=path.get("path", "/") or "/",
                        exact=path.get("pathType") == "Exact",
                        namespace=namespace,
                        service=backend["name"],
                        port=str(wanted.get("name") or wanted.get("number")),
                        upstreams=upstreams,
                    )
                )
    return out


def _location(route: Route) -> str:
    if route.upstreams:
        action = (
            f"proxy_pass http://{route.upstream_name};\n"
            "            proxy_set_header Host $host;\n"
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            "            proxy_set_header X-Request-ID $request_id;"
        )
    else:
        service = f"{route.namespace}/{route.service}:{route.port}"
        action = f'default_type text/plain; return 503 "no ready endpoint for service {service}\\n";'
    match = f"= {route.path}" if route.exact else route.path
    return f"        location {match} {{\n            {action}\n        }}\n"


def nginx_conf(all_routes: list[Route], listen: str, run_dir: Path, workers: int = 2) -> str:
    """The Ingress routes on `listen`. Connections to
    the pods are not kept alive: a replica that drains after SIGTERM closes them, and a request
    on a closing keep-alive connection could be lost; a refused connection (a replica gone) is
    retried on the next endpoint, which is safe even for POST."""
    upstreams = {r.upstream_name: r.upstreams for r in all_routes if r.upstreams}
    hosts: dict[str, list[Route]] = {}
    for route in all_routes:
        hosts.setdefault(route.host, []).append(route)
    blocks = []
    for name, servers in sorted(upstreams.items()):
        lines = "".join(f"        server {s} max_fails=0;\n" for s in servers)
        blocks.append(f"    upstream {name} {{\n{lines}    }}\n")
    for host, host_routes in sorted(hosts.items()):
        names = host or "_"
        locations = "".join(_location(r) for r in sorted(host_routes, key=lambda r: (-len(r.path), r.path)))
        listen_flags = " default_server" if not host else ""
        blocks.append(
            f"    server {{\n        listen {listen}{listen_flags};\n        server_name {names};\n{locations}    }}\n"
        )
    default = (
        ""
        if "" in hosts
        else (
            f"    server {{\n        listen {listen} default_server;\n        server_name _;\n"
            '        location = /healthz { return 200 "ok\\n"; }\n'
            '        location / { default_type text/plain; return 404 "no Ingress rule for host $host\\n"; }\n    }\n'
        )
    )
    tmp = run_dir / "tmp"
    return f"""# Rendered by devcluster's ingress controller from Ingresses, Services and EndpointSlices.
worker_processes {workers};
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    log_format routed '$remote_addr "$host" "$request" $status $request_time upstream=$upstream_addr';
    access_log {run_dir}/access.log routed;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server_names_hash_bucket_size 256;  # Ingress hosts run long (KServe's <name>-predictor-<namespace>.<domain>)
    server_names_hash_max_size 8192;
    client_max_body_size 0;  # the model server enforces its own limit (413)
    client_body_buffer_size 1m;
    proxy_http_version 1.1;
    proxy_buffering off;
    proxy_read_timeout 120s;
    proxy_next_upstream error timeout;
{"".join(blocks)}{default}}}
"""
