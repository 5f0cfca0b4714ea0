"""Turns benchmark results into a Markdown table and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = ("naive", "torchserve", "kserve-fp32", "kserve-best")


def _row(variant: str, r: dict[str, Any], base: dict[str, Any] | None, naive: dict[str, Any] | None) -> str:
    vs_fp32 = f"{r['rps'] / base['rps']:.1f}x" if base and base.get("rps") else "-"
    vs_naive = f"{r['rps'] / naive['rps']:.0f}x" if naive and naive.get("rps") else "-"
    return (
        f"| {variant} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['rps']:.1f} | "
        f"{r.get('candidates_per_s', 0):,.0f} | {r.get('cpu_ms_per_request', 0):.1f} | {r.get('rss_mb', 0):.0f} | {vs_fp32} | {vs_naive} |"
    )


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']['description']}", ""]
    for size, by_variant in sorted(results["serving"].items(), key=lambda kv: int(kv[0])):
        lines += [
            f"**{size} candidates per request**",
            "",
            "| variant | concurrency | p50 ms | p95 ms | p99 ms | req/s | candidates/s | CPU ms/req | RSS MB | vs fp32 eager | vs naive |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for variant in (*VARIANTS, "in-process"):
            for r in by_variant.get(variant, []):
                base = next(
                    (b for b in by_variant.get("kserve-fp32", []) if b["concurrency"] == r["concurrency"]), None
                )
                naive = next((b for b in by_variant.get("naive", []) if b["concurrency"] == r["concurrency"]), None)
                lines.append(_row(variant, r, base, naive))
        lines.append("")
    lines += [
        "**Precision and the quality gate** (scoring 1,000 candidates in-process; NDCG@10 on the saved validation set)",
        "",
    ]
    lines += ["| precision | score ms | NDCG@10 | drop vs fp32 | gate (0.01) |", "|---|---|---|---|---|"]
    for precision, r in results["precisions"].items():
        lines.append(
            f"| {precision} | {r['score_ms']:.2f} | {r['ndcg@10']:.4f} | {r['ndcg_drop']:.4f} | {'pass' if r['passed_gate'] else 'refused'} |"
        )
    stages = results.get("stages")
    if stages:
        lines += ["", "**Where one in-process request goes** (1,000 candidates, fp32, median ms)", ""]
        lines += [
            "| JSON decode | features | model forward | score (incl. user tower) | rank | whole request | request / forward |",
            "|---|---|---|---|---|---|---|",
        ]
        lines.append(
            f"| {stages['json_decode_ms']:.2f} | {stages['features_ms']:.2f} | {stages['forward_ms']:.2f} | {stages['score_ms']:.2f} | "
            f"{stages['rank_ms']:.2f} | {stages['request_bytes_in_out_ms']:.2f} | {stages['request_over_forward']:.2f}x |"
        )
    floor = results.get("floor")
    if floor:
        lines += [
            "",
            f"**Compute floor**: {floor['flops_per_candidate']:,} FLOPs per candidate; measured peak {floor['peak_gflops_fp32']:.0f} GFLOP/s fp32, "
            f"{floor['peak_gflops_bf16']:.0f} GFLOP/s bf16 (large matmul). 1,000 candidates need at least {floor['floor_ms_fp32']:.3f} ms (fp32) / "
            f"{floor['floor_ms_bf16']:.3f} ms (bf16); the model's own forward takes {floor['forward_ms']:.2f} ms, "
            f"{floor['forward_ms'] / floor['floor_ms_fp32']:.0f}x the fp32 floor.",
        ]
    if results.get("targets"):
        lines += ["", "**Targets** (1,000 candidates)", "", "| target | measured | met |", "|---|---|---|"]
        for t in results["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |")
    if results.get("operator"):
        lines += ["", operator_table(results["operator"], results.get("operator_killed"))]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    by_variant = results["serving"].get("1000") or next(iter(results["serving"].values()))
    figure, (p50, rps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant in VARIANTS:
        rows = sorted(by_variant.get(variant, []), key=lambda r: r["concurrency"])
        if not rows:
            continue
        xs = [r["concurrency"] for r in rows]
        p50.plot(xs, [r["p99_ms"] for r in rows], marker="o", label=variant)
        rps.plot(xs, [r["rps"] for r in rows], marker="o", label=variant)
    p50.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency",
        ylabel="p99 latency (ms)",
        title="p99 latency, 1,000 candidates",
    )
    rps.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="requests/s", title="throughput, 1,000 candidates")
    for axis in (p50, rps):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(results["machine"]["description"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def operator_table(rows: list[dict[str, Any]], killed: dict[str, Any] | None = None) -> str:
    """The operator's figures; API requests are the API server's count of the operator's identity."""
    lines = [
        "**Operator on the local control plane** (standalone backend; API requests counted by the API server)",
        "",
        "| RecModels applied at once | created->children p50 s | p99 s | 4 kubectl applies s | apply->all Ready s "
        "| API requests per RecModel | operator RSS MB | at rest: requests per RecModel per min | at rest: writes/min "
        "| at rest: CPU % of a core |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recmodels']} | {r['apply_to_children_p50_s']:.2f} | {r['apply_to_children_p99_s']:.2f} "
            f"| {r['kubectl_apply_s']:.1f} | {r['apply_to_all_ready_s']:.1f} | {r['api_requests_per_recmodel']:.1f} | {r['operator_rss_mb']:.0f} "
            f"| {r['rest_requests_per_recmodel_per_minute']:.3f} | {r['rest_writes_per_minute']:.0f} "
            f"| {r['rest_cpu_percent_of_a_core']:.1f} |"
        )
    if killed:
        lines += [
            "",
            f"{killed['recmodels']:,} RecModels on a cluster without KServe or KEDA, the operator SIGKILLed "
            f"{killed['killed_after_s']:.0f} s into the apply and restarted: all Ready after {killed['all_ready_s']:.1f} s, "
            f"{killed['deployments']:,} Deployments ({killed['deployments_without_their_recmodel']} orphaned), "
            f"{killed['error_lines']} ERROR lines in the operator's log.",
        ]
    return "\n".join(lines) + "\n"
