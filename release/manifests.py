"""Renders manifests/ from the Helm chart, so `kubectl apply -f manifests/` installs exactly
what `helm install` would. `python -m release.manifests [--check]`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from devcluster.build.go import build_all
from devcluster.build.versions import KUBERNETES_VERSION, REPO_ROOT

CHART = REPO_ROOT / "charts" / "recmodel-operator"
MANIFESTS = REPO_ROOT / "manifests"
RELEASE, NAMESPACE = "recmodel", "recmodel-system"
HEADER = "# Rendered from charts/recmodel-operator by `make manifests`. Do not edit; change the chart.\n"


def _helm_template(*extra: str) -> str:
    helm = build_all() / "helm"
    result = subprocess.run(
        [
            str(helm),
            "template",
            RELEASE,
            str(CHART),
            f"--namespace={NAMESPACE}",
            f"--kube-version={KUBERNETES_VERSION}",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def rendered() -> dict[Path, str]:
    runtime = _helm_template("--set=kserveRuntime.install=true", "--show-only=templates/clusterservingruntime.yaml")
    return {
        MANIFESTS / "01-crd.yaml": (CHART / "crds" / "recmodels.recmodel.dev.yaml").read_text(),
        MANIFESTS / "02-operator.yaml": HEADER + _helm_template(),
        MANIFESTS / "kserve" / "clusterservingruntime.yaml": HEADER + runtime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if manifests/ differs from the chart")
    args = parser.parse_args()
    stale = []
    for path, text in rendered().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO_ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        sys.exit(f"out of date: {', '.join(stale)}; run `make manifests`")


if __name__ == "__main__":
    main()
