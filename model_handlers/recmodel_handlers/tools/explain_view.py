"""An explanation for people: a table in the terminal and a heat map (items x feature groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def table(explanation: dict[str, Any]) -> str:
    groups: list[str] = explanation["groups"]
    explained = [item for item in explanation["items"] if "contributions" in item]
    width = max([4, *(len(item["id"]) for item in explained)])
    columns = [max(8, len(g)) for g in groups]
    head = f"{'rank':>4}  {'item':<{width}} {'score':>7} {'base':>7} "
    lines = [head + " ".join(f"{g:>{w}}" for g, w in zip(groups, columns, strict=True))]
    for rank, item in enumerate(explained, start=1):
        values = " ".join(f"{item['contributions'][g]:>+{w}.4f}" for g, w in zip(groups, columns, strict=True))
        lines.append(f"{rank:>4}  {item['id']:<{width}} {item['score']:>7.4f} {item['baseline']:>7.4f} {values}")
    lines.append("score = base + the row's contributions (Shapley values; base = every group missing)")
    return "\n".join(lines)


def heat_map(explanation: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit("--png needs matplotlib: pip install matplotlib") from error
    groups: list[str] = explanation["groups"]
    explained = [item for item in explanation["items"] if "contributions" in item]
    values = [[item["contributions"][g] for g in groups] for item in explained]
    limit = max((abs(v) for row in values for v in row), default=1.0) or 1.0
    figure, axes = plt.subplots(figsize=(1.0 + 0.9 * len(groups), 1.2 + 0.35 * len(explained)))
    image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(range(len(groups)), groups, rotation=45, ha="right")
    axes.set_yticks(
        range(len(explained)), [f"{i + 1}. {item['id']} ({item['score']:.3f})" for i, item in enumerate(explained)]
    )
    axes.set_title(f"{explanation['model']} {explanation['version']}: contribution to each item's score")
    figure.colorbar(image, ax=axes, label="Shapley value (score units)")
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)
