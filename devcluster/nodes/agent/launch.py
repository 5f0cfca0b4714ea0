"""How a container of a pod becomes a local process (pure): which images the process node can
run, their entrypoints, and the path, address and storage translations that stand in for a
container's mount namespace, network namespace and object store."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

WILDCARD = "0.0.0.0"  # a container's "every interface" is its pod's own address here
STORAGE_INITIALIZER = "storage-initializer"  # KServe's init container image (kserve/storage-initializer)


class NotRunnable(Exception):
    """The container cannot run as a process here; the message says why (it goes to pod status)."""


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class Node:
    """What every launch on a node shares."""

    bin_dir: Path  # where the model server's executables live (the project's virtualenv)
    storage_root: Path  # the node's object store: s3://bucket/key is storage_root/bucket/key
    server_images: tuple[str, ...]  # image repositories whose entrypoint is in bin_dir


def local_uri(uri: str, storage_root: Path) -> str:
    """Object-store URIs point into the node's object store; others are left as they are."""
    for scheme in ("s3://", "gs://"):
        if uri.startswith(scheme):
            return f"file://{storage_root / uri.removeprefix(scheme)}"
    return uri


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


SERVICE_NAME = re.compile(
    r"\b([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc(?:\.cluster\.local)?\b"
)

Resolver = Callable[[str, str], "str | None"]  # (service, namespace) -> where it listens


class Rewriter:
    """Container paths to the pod's folders, the wildcard address to the pod's loopback address,
    object-store URIs to the node's store, `<service>.<namespace>.svc` names to where the Service
    listens (cluster DNS's job); in a bare value or a `--flag=value` argument."""

    def __init__(self, mounts: dict[str, Path], address: str, storage_root: Path, resolve: Resolver) -> None:
        self.mounts = sorted(mounts.items(), key=lambda m: -len(m[0]))
        self.address = address
        self.storage_root = storage_root
        self.resolve = resolve

    def _service(self, match: re.Match[str]) -> str:
        return self.resolve(match.group(1), match.group(2)) or match.group(0)

    def value(self, text: str) -> str:
        if text == WILDCARD:
            return self.address
        text = SERVICE_NAME.sub(self._service, local_uri(text, self.storage_root))
        for mount_path, local in self.mounts:
            if text == mount_path or text.startswith(mount_path.rstrip("/") + "/"):
                return str(local) + text[len(mount_path.rstrip("/")) :]
        return text

    def arg(self, text: str) -> str:
        if text.startswith("-") and "=" in text:
            flag, value = text.split("=", 1)
            return f"{flag}={self.value(value)}"
        return self.value(text)


def _env(container: Obj, fields: dict[str, str], rewrite: Rewriter, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = rewrite.value(str(item["value"]))
        elif (ref := item.get("valueFrom", {}).get("fieldRef")) is not None:
            if ref["fieldPath"] not in fields:
                raise NotRunnable(f"env {item['name']}: fieldRef {ref['fieldPath']} is not supported here")
            env[item["name"]] = fields[ref["fieldPath"]]
        else:
            raise NotRunnable(f"env {item['name']}: only values and fieldRefs are supported here")
    return env


def launch(
    container: Obj,
    node: Node,
    *,
    pod_dir: Path,
    volumes: dict[str, Path],
    address: str,
    fields: dict[str, str],
    base_env: dict[str, str],
    resolve: Resolver = lambda _service, _namespace: None,
) -> Launch:
    """The process for one container. `volumes`: the pod's volume name -> its folder;
    `address`: where the pod listens; `fields`: what fieldRefs may read; `resolve`: Services'
    addresses by name."""
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise NotRunnable(
                f"volume {mount['name']}: only emptyDir, configMap, secret and projected volumes are supported here"
            )
        mounts[mount["mountPath"]] = volumes[mount["name"]] / mount.get("subPath", "")
    rewrite = Rewriter(mounts, address, node.storage_root, resolve)
    env = _env(container, fields, rewrite, base_env)
    if "/tmp" in mounts:
        env["TMPDIR"] = str(mounts["/tmp"])
    image = container.get("image", "")
    repository = _repository(image)
    args = [rewrite.arg(str(a)) for a in container.get("args", [])]
    if repository.rsplit("/", 1)[-1] == STORAGE_INITIALIZER:
        if len(args) != 2:
            raise NotRunnable(f"{image}: expected args [storageUri, destination], got {args}")
        argv = [str(node.bin_dir / "recmodel"), "fetch", f"--uri={args[0]}", f"--out={args[1]}"]
        return Launch(argv, env, pod_dir)
    if repository not in node.server_images:
        raise NotRunnable(
            f"image {image}: a process node runs {', '.join(node.server_images)} and KServe's storage initializer"
        )
    argv = [rewrite.arg(str(a)) for a in container.get("command", [])] + args
    if not argv:
        raise NotRunnable(f"container {container['name']}: no command or args")
    executable = node.bin_dir / argv[0]
    if "/" in argv[0] or not executable.exists():
        raise NotRunnable(f"{argv[0]}: not an executable of the model server's image")
    return Launch([str(executable), *argv[1:]], env, pod_dir)
