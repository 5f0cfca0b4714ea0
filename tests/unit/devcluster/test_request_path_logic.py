"""The devcluster's request path, its pure parts: pod addresses, routes from Ingresses and
EndpointSlices to nginx.conf, and how a container becomes a local process."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devcluster.addons.ingress.routes import CLASS_NAME, nginx_conf, routes, service_ports
from devcluster.build.go import nginx_binary
from devcluster.common.podnet import Allocator, loopback_twin, node_cidr, prometheus_twin_relabel
from devcluster.nodes.agent.launch import Node, NotRunnable, launch, local_uri
from devcluster.nodes.agent.probes import Prober


def test_pod_ips_have_loopback_twins_and_other_addresses_none() -> None:
    assert loopback_twin("10.245.1.7") == "127.245.1.7"
    assert loopback_twin("10.245.2.254") == "127.245.2.254"
    assert loopback_twin("10.0.0.5") is None  # a KWOK pod: nothing listens
    assert loopback_twin("not-an-ip") is None


def test_allocator_hands_out_each_address_once_and_reuses_freed_ones() -> None:
    allocator = Allocator(node_cidr(3))
    assert allocator.node_ip == "10.245.3.1"
    taken = [allocator.take() for _ in range(253)]
    assert len(set(taken)) == 253 and all(ipaddress.IPv4Address(ip) in node_cidr(3) for ip in taken)
    with pytest.raises(RuntimeError, match="no pod IP left"):
        allocator.take()
    allocator.give_back(taken[5])
    assert allocator.take() == taken[5]


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
        [_slice(("10.245.1.2", True), ("10.245.1.3", False), ("10.0.0.9", True))],
    )
    (route,) = found
    assert route.upstreams == ("127.245.1.2:8080",)  # not the unready one, not the KWOK pod
    by_number = routes([_ingress("h", "ranker", {"number": 80})], [SERVICE], [_slice(("10.245.1.2", True))])
    assert by_number[0].upstreams == ("127.245.1.2:8080",)


def test_a_host_and_path_claimed_twice_goes_to_the_oldest_ingress() -> None:
    newer = _ingress("h", "ranker", {"name": "http"})
    newer["metadata"] = {"namespace": "b", "name": "ranker", "creationTimestamp": "2026-11-29T08:46:00Z"}
    older = _ingress("h", "ranker", {"name": "http"})
    older["metadata"]["creationTimestamp"] = "2026-11-29T08:45:00Z"
    (route,) = routes([newer, older], [SERVICE], [_slice(("10.245.1.2", True))])
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
        [_slice(("10.245.1.2", True), ("10.245.1.4", True))],
    )
    text = nginx_conf(found, "127.0.0.1:18080", tmp_path)
    assert "server 127.245.1.2:8080 max_fails=0;" in text and "server 127.245.1.4:8080 max_fails=0;" in text
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


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A virtualenv's bin folder with the model server's executable."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "recmodel").touch()
    return folder


NODE = Node(bin_dir=Path("/venv/bin"), storage_root=Path("/store"), server_images=("ghcr.io/recmodel/recmodel-server",))


def _launch(container: dict[str, Any], tmp_path: Path, bin_dir: Path | None = None) -> Any:
    node = Node(bin_dir=bin_dir or NODE.bin_dir, storage_root=NODE.storage_root, server_images=NODE.server_images)
    return launch(
        container,
        node,
        pod_dir=tmp_path,
        volumes={"model": tmp_path / "volumes" / "model", "tmp": tmp_path / "volumes" / "tmp"},
        address="127.245.1.2",
        fields={"status.podIP": "10.245.1.2"},
        base_env={"PATH": "/venv/bin"},
    )


def test_a_model_server_container_becomes_a_process_on_the_pod_address(tmp_path: Path, bin_dir: Path) -> None:
    container = {
        "name": "model-server",
        "image": "ghcr.io/recmodel/recmodel-server:0.1.0",
        "command": ["recmodel", "serve"],
        "args": ["--model-dir=/mnt/models", "--host=0.0.0.0", "--http-port=8080"],
        "env": [
            {"name": "OMP_NUM_THREADS", "value": "1"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "volumeMounts": [{"name": "model", "mountPath": "/mnt/models"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    how = _launch(container, tmp_path, bin_dir)
    assert how.argv == [
        str(bin_dir / "recmodel"),
        "serve",
        f"--model-dir={tmp_path / 'volumes' / 'model'}",
        "--host=127.245.1.2",
        "--http-port=8080",
    ]
    assert how.env["POD_IP"] == "10.245.1.2" and how.env["TMPDIR"] == str(tmp_path / "volumes" / "tmp")


def test_kserve_storage_initializer_fetches_from_the_node_object_store(tmp_path: Path) -> None:
    container = {
        "name": "storage-initializer",
        "image": "kserve/storage-initializer:v0.20.0",
        "args": ["s3://models/ranker/v1", "/mnt/models"],
        "volumeMounts": [{"name": "model", "mountPath": "/mnt/models"}],
    }
    how = _launch(container, tmp_path)
    assert how.argv == [
        "/venv/bin/recmodel",
        "fetch",
        "--uri=file:///store/models/ranker/v1",
        f"--out={tmp_path}/volumes/model",
    ]
    assert local_uri("https://example.com/m.tar", Path("/store")) == "https://example.com/m.tar"


@pytest.mark.parametrize(
    ("container", "reason"),
    [
        ({"name": "c", "image": "nginx:1.27", "args": ["x"]}, "image nginx:1.27"),
        ({"name": "c", "image": "ghcr.io/recmodel/recmodel-server:1", "command": ["/bin/sh"]}, "not an executable"),
        (
            {
                "name": "c",
                "image": "ghcr.io/recmodel/recmodel-server:1",
                "args": ["recmodel"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            "volume data",
        ),
        (
            {
                "name": "c",
                "image": "ghcr.io/recmodel/recmodel-server:1",
                "args": ["recmodel"],
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            },
            "env X",
        ),
    ],
)
def test_what_cannot_run_here_says_why(container: dict[str, Any], reason: str, tmp_path: Path) -> None:
    with pytest.raises(NotRunnable, match=reason):
        _launch(container, tmp_path)


def test_probe_verdicts_follow_thresholds() -> None:
    probe = Prober({"tcpSocket": {"port": 1}, "periodSeconds": 1, "failureThreshold": 2}, passed=True)
    probe.start(0.0)
    assert probe.tick(0.0, "127.0.0.1", {}) is None  # one failure: still alive
    assert probe.tick(0.5, "127.0.0.1", {}) is None  # not due yet
    assert probe.tick(1.0, "127.0.0.1", {}) is False  # two in a row: dead


def test_services_of_process_pods_listen_at_their_cluster_ip_twin() -> None:
    canary = {
        "metadata": {"namespace": "shop", "name": "ranker-canary"},
        "spec": {"clusterIP": "10.96.3.4", "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
    }
    kwok = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": "10.96.0.9"}}
    slices = [
        {
            **_slice(("10.245.1.9", False)),
            "metadata": {"namespace": "shop", "name": "c", "labels": {"kubernetes.io/service-name": "ranker-canary"}},
        },
        _slice(("10.0.0.5", True)),  # the other Service's pods are KWOK's: not proxied
    ]
    (port,) = service_ports([canary, kwok], slices)
    assert (port.listen, port.upstreams) == ("127.96.3.4:8080", ())  # its one pod is not ready: 503
    assert "listen 127.96.3.4:8080;" in nginx_conf([], "127.0.0.1:1", Path("/run"), services=[port])


def test_service_names_resolve_to_where_the_service_listens(tmp_path: Path, bin_dir: Path) -> None:
    container = {
        "name": "model-server",
        "image": "ghcr.io/recmodel/recmodel-server:0.1.0",
        "args": [
            "recmodel",
            "serve",
            "--shadow-url=http://ranker-canary.shop.svc:8080",
            "--peer=gone.shop.svc.cluster.local",
        ],
    }
    node = Node(bin_dir=bin_dir, storage_root=NODE.storage_root, server_images=NODE.server_images)
    known = {("ranker-canary", "shop"): "127.96.3.4"}
    how = launch(
        container,
        node,
        pod_dir=tmp_path,
        volumes={},
        address="127.245.1.2",
        fields={},
        base_env={},
        resolve=lambda service, namespace: known.get((service, namespace)),
    )
    assert how.argv[2:] == ["--shadow-url=http://127.96.3.4:8080", "--peer=gone.shop.svc.cluster.local"]


def test_prometheus_dials_the_same_twin_as_everyone_else() -> None:
    regex, replacement = prometheus_twin_relabel()
    dialled = re.fullmatch(regex, "10.245.1.7;8080")
    assert dialled is not None and re.fullmatch(regex, "10.0.0.5;8080") is None
    assert dialled.expand(replacement.replace("$", "\\")) == f"{loopback_twin('10.245.1.7')}:8080"


def test_prometheus_dials_a_real_nodes_pod_at_its_own_address() -> None:
    from devcluster.common.podnet import prometheus_real_relabel

    regex, replacement = prometheus_real_relabel()
    dialled = re.fullmatch(regex, "10.246.2.9;8080")
    assert dialled is not None and re.fullmatch(regex, "10.245.1.7;8080") is None
    assert dialled.expand(replacement.replace("$", "\\")) == "10.246.2.9:8080"
