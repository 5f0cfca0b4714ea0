"""The devcluster's request path, its pure parts: routes from Ingresses and EndpointSlices to
nginx.conf, and how Prometheus finds the pods."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from devcluster.addons.ingress.routes import CLASS_NAME, nginx_conf, routes
from devcluster.build.go import nginx_binary
from devcluster.common.podnet import on_real_node, prometheus_real_relabel


def test_only_real_nodes_pods_have_something_to_dial() -> None:
    assert on_real_node("10.246.1.7") and on_real_node("10.246.2.254")
    assert not on_real_node("10.244.0.5")  # a KWOK pod: nothing listens
    assert not on_real_node("10.96.0.10")  # a ClusterIP: kube-proxy's, not a pod
    assert not on_real_node("not-an-ip")


def _ingress(
    host: str, service: str, port: dict[str, Any], cls: str | None = CLASS_NAME, path: str = "/"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {"path": path, "pathType": "Prefix", "backend": {"service": {"name": service, "port": port}}}
                    ]
                },
            }
        ]
    }
    if cls:
        spec["ingressClassName"] = cls
    return {"metadata": {"namespace": "shop", "name": service}, "spec": spec}


SERVICE = {
    "metadata": {"namespace": "shop", "name": "ranker"},
    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
}


def _slice(*endpoints: tuple[str, bool]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "ranker-abc", "labels": {"kubernetes.io/service-name": "ranker"}},
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints],
    }


def test_routes_go_to_ready_endpoints_of_the_named_service_port() -> None:
    found = routes(
        [_ingress("ranker.shop.example", "ranker", {"name": "http"})],
        [SERVICE],
        [_slice(("10.246.1.2", True), ("10.246.1.3", False), ("10.244.0.9", True))],
    )
    (route,) = found
    assert route.upstreams == ("10.246.1.2:8080",)  # not the unready one, not the KWOK pod
    by_number = routes([_ingress("h", "ranker", {"number": 80})], [SERVICE], [_slice(("10.246.1.2", True))])
    assert by_number[0].upstreams == ("10.246.1.2:8080",)


def test_a_host_and_path_claimed_twice_goes_to_the_oldest_ingress() -> None:
    newer = _ingress("h", "ranker", {"name": "http"})
    newer["metadata"] = {"namespace": "b", "name": "ranker", "creationTimestamp": "2026-11-29T08:46:00Z"}
    older = _ingress("h", "ranker", {"name": "http"})
    older["metadata"]["creationTimestamp"] = "2026-11-29T08:45:00Z"
    (route,) = routes([newer, older], [SERVICE], [_slice(("10.246.1.2", True))])
    assert route.namespace == "shop"  # one location per host and path: nginx refuses duplicates


def test_other_classes_are_not_ours_and_missing_services_have_no_upstream() -> None:
    assert routes([_ingress("h", "ranker", {"name": "http"}, cls="istio")], [SERVICE], []) == []
    (route,) = routes([_ingress("h", "gone", {"name": "http"})], [SERVICE], [])
    assert route.upstreams == ()


def test_rendered_configuration_routes_by_host_and_answers_503_without_endpoints(tmp_path: Path) -> None:
    long_host = "a-rather-long-inference-service-name-predictor-t-2ecb1327.shop-namespace.example.com"
    found = routes(
        [
            _ingress("ranker.shop.example", "ranker", {"name": "http"}),
            _ingress("empty.shop.example", "empty", {"name": "http"}),
            *(_ingress(f"{i}.{long_host}", "ranker", {"name": "http"}) for i in range(40)),
        ],
        [SERVICE, {**SERVICE, "metadata": {"namespace": "shop", "name": "empty"}}],
        [_slice(("10.246.1.2", True), ("10.246.1.4", True))],
    )
    text = nginx_conf(found, "127.0.0.1:18080", tmp_path)
    assert "server 10.246.1.2:8080 max_fails=0;" in text and "server 10.246.1.4:8080 max_fails=0;" in text
    assert "server_name ranker.shop.example;" in text
    assert 'return 503 "no ready endpoint for service shop/empty:http' in text
    assert "keepalive" not in text  # a draining replica's closing connection cannot take a request with it
    nginx = nginx_binary()  # Debian's package, unpacked into the cache
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    checked = subprocess.run(
        [str(nginx), "-p", str(tmp_path), "-c", str(conf), "-t"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_prometheus_dials_a_real_nodes_pod_at_its_own_address() -> None:
    regex, replacement = prometheus_real_relabel()
    dialled = re.fullmatch(regex, "10.246.2.9;8080")
    assert dialled is not None and re.fullmatch(regex, "10.244.1.7;8080") is None
    assert dialled.expand(replacement.replace("$", "\\")) == "10.246.2.9:8080"
