"""The chart's monitoring as Prometheus itself reads it: `promtool check rules` on the rendered
PrometheusRule, `promtool test rules` for every alert (fires and stays silent, see
alerts_test.yaml), and every Grafana dashboard query parsed by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster.build.versions import KUBERNETES_VERSION, PROMETHEUS_VERSION, REPO_ROOT, bin_dir

PROMTOOL = bin_dir() / f"promtool-{PROMETHEUS_VERSION}"
HELM = bin_dir() / "helm"
CHART = REPO_ROOT / "charts" / "recmodel-operator"
HERE = Path(__file__).resolve().parent


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rendered = subprocess.run(
        [
            str(HELM),
            "template",
            "r",
            str(CHART),
            f"--kube-version={KUBERNETES_VERSION}",
            "--set=metrics.prometheusRule.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    shutil.copy(HERE / "alerts_test.yaml", folder / "alerts_test.yaml")
    return folder


def test_rules_pass_promtool_check(rules: Path) -> None:
    result = promtool("check", "rules", "rules.yaml", cwd=rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout + result.stderr


def test_check_catches_a_broken_rule(tmp_path: Path) -> None:
    broken = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "rate(x[5m] > 0"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", "broken.yaml", cwd=tmp_path).returncode != 0


def test_every_alert_fires_and_stays_silent_as_specified(rules: Path) -> None:
    alerts = {r["alert"] for g in yaml.safe_load((rules / "rules.yaml").read_text())["groups"] for r in g["rules"]}
    tested = set(re.findall(r"alertname: (\w+)", (rules / "alerts_test.yaml").read_text()))
    assert alerts == tested, f"alerts without a test: {alerts - tested}"
    result = promtool("test", "rules", "alerts_test.yaml", cwd=rules)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_dashboard_queries_parse() -> None:
    dashboard = json.loads((CHART / "dashboards" / "recmodel.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]
    assert len(queries) >= 10
    for query in queries:
        concrete = query.replace("$model", "ranker|other").replace("$__rate_interval", "5m")
        result = promtool("--experimental", "promql", "format", concrete)
        assert result.returncode == 0, f"{query}\n{result.stderr}"
