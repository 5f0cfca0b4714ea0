"""The README and docs/ stay true: their make targets, paths, CLI flags, chart values, samples and
links between pages exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from recmodel_handlers.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README = "\n".join(page.read_text() for page in PAGES)  # every page, checked as one text


def test_the_readme_is_short_and_links_every_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_relative_links_lead_somewhere() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links {target}"


def test_make_targets_exist() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M))
    used = set(re.findall(r"make ([a-z][a-z-]+)", README))
    assert used and used <= targets, used - targets


def test_paths_exist() -> None:
    paths = set(
        re.findall(r"(?<![.\w/])((?:manifests|charts|devcluster|operator|model_handlers|bench|tests)/[\w./-]*)", README)
    )
    generated = ("bench/results",)  # written by `make bench`, not committed
    missing = [
        p for p in paths if not (REPO / p.rstrip("/.")).exists() and "<" not in p and not p.startswith(generated)
    ]
    assert not missing, missing


def test_cli_commands_and_flags_exist() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command, flags in re.findall(r"recmodel (train|package|serve|predict|bench) ([^`\n]*)", README):
        known = {o for a in commands[command]._actions for o in a.option_strings}
        for flag in re.findall(r"(--[a-z-]+)", flags):
            assert flag in known, f"recmodel {command} {flag}"


def test_chart_values_mentioned_exist() -> None:
    values = yaml.safe_load((REPO / "charts" / "recmodel-operator" / "values.yaml").read_text())
    for dotted in re.findall(
        r"`((?:metrics|kserveRuntime)\.[\w.]+|serverImage|watchNamespaces|prometheusUrl|ingressDomain)`", README
    ):
        node = values
        for part in dotted.split("."):
            assert part in node, dotted
            node = node[part]


def test_samples_named_in_readme_exist() -> None:
    for sample in re.findall(r"(\d\d-[a-z0-9-]+\.yaml)", README):
        assert (REPO / "manifests" / "samples" / sample).exists(), sample
