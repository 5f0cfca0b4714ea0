"""Turns benchmark results into a Markdown table and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = ("naive", "torchserve", "kserve-fp32", "kserve-best", "kserve-best-replicas")
PEERS = ("torchserve-tuned", "ray-serve", "pytriton")


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
        for variant in (*VARIANTS, *PEERS, "in-process"):
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
    lines += _answers(results.get("answers"))
    lines += _errors(results["serving"])
    lines += _large(results.get("large"))
    lines += overload_table(results.get("overload"))
    lines += retrieval_table(results.get("retrieval"))
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
        if "ids_only_request_ms" in stages:
            lines.append(
                f"\nIds-only (candidates as bare ids, features from the package's item table): "
                f"{stages['ids_only_request_bytes']:,} bytes instead of {stages['request_bytes']:,} "
                f"({stages['request_bytes'] / stages['ids_only_request_bytes']:.0f}x smaller), "
                f"{stages['ids_only_request_ms']:.2f} ms in-process ({stages['ids_only_over_forward']:.2f}x the forward pass)."
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


def retrieval_table(retrieval: dict[str, Any] | None) -> list[str]:
    """The catalog's index against the exact search, and the funnel against sending ids."""
    if not retrieval:
        return []
    lines = [
        "",
        "**Retrieval** (index: faiss IVF, centered vectors; recall@100 against the exact search; one query at a time)",
        "",
        "| items | lists / probed | build s | files MB | recall@100 (worst) | index p50 / p99 ms | exact p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in retrieval["index"]:
        lines.append(
            f"| {r['items']:,} | {r['lists']} / {r['probes']} | {r['build_s']:.1f} | {sum(r['files_mb'].values()):.0f} | "
            f"{r['recall@100']:.3f} ({r['worst_recall@100']:.2f}) | {r['index']['p50_ms']:.2f} / {r['index']['p99_ms']:.2f} | "
            f"{r['exact']['p50_ms']:.2f} / {r['exact']['p99_ms']:.2f} |"
        )
    funnel = retrieval["funnel"]
    lines += [
        "",
        f"Funnel in-process, top 20 of {funnel['candidates']:,} candidates, one request at a time:",
        "",
        "| path | p50 ms | p99 ms | request bytes |",
        "|---|---|---|---|",
    ]
    for name in ("retrieve", "client sends ids"):
        r = funnel[name]
        lines.append(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['request_bytes']:,} |")
    return lines


def overload_table(overload: dict[str, Any] | None) -> list[str]:
    """Offered load in multiples of the closed-loop capacity -> what the replica made of it."""
    if not overload:
        return []
    lines = [
        "",
        "**Overload** (one replica pinned to one core, vegeta on the other; 1,000 candidates, open loop;"
        " capacity: the best closed loop of 2, 4 or 8 clients)",
        "",
        "| profile | capacity req/s | offered | goodput req/s | goodput / capacity | refused | refusal p99 ms "
        "| accepted p99 ms (unloaded) | core busy | CPU ms per refusal (per request) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for profile, measured in overload.items():
        for row in measured["rows"]:
            lines.append(
                f"| {profile} | {measured['capacity_rps']:.0f} | {row['offered']}x | {row['goodput_rps']:.0f} "
                f"| {row['goodput_share']:.0%} | {row['refused']} | {row['refusal_p99_ms']:.1f} "
                f"| {row['accepted_p99_ms']:.1f} ({measured['unloaded_p99_ms']:.1f}) | {row['cpu_busy']:.0%} "
                f"| {measured['cpu_per_refusal_ms']:.3f} ({measured['cpu_per_request_ms']:.2f}) |"
            )
    lines += [""] + [
        f"{profile}: capacity from {m['closed_loop_clients']} clients ({m['closed_loop_refused']} refused in that"
        f" loop); the most the replica answered "
        f"in any row was {m['peak_goodput_rps']:.0f} req/s ({m['peak_goodput_rps'] / m['capacity_rps']:.0%} of capacity)."
        for profile, m in overload.items()
    ]
    return lines


def _errors(by_size: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    failed = [
        f"{variant} ({size} candidates, c={r['concurrency']}: {r['errors']})"
        for size, by_variant in by_size.items()
        for variant, rows in by_variant.items()
        for r in rows
        if r.get("errors")
    ]
    return [f"Answers other than 200 (left out of the latencies): {', '.join(failed) or 'none'}.", ""]


def _answers(answers: dict[str, bool] | None) -> list[str]:
    if not answers:
        return []
    wrong = [v for v, ok in answers.items() if not ok]
    verdict = "all rank the top 10 as the core does in-process" if not wrong else f"top 10 differs: {', '.join(wrong)}"
    return [f"Checked before measuring, one 1,000-candidate request each: {verdict}.", ""]


def _large(big: dict[str, Any] | None) -> list[str]:
    if not big:
        return []
    tables = ", ".join(f"{name} {t['rows']:,} rows ({t['trained']:,} trained)" for name, t in big["tables"].items())
    files = ", ".join(f"{name} {mb:,.0f} MB" for name, mb in big["files_mb"].items() if mb >= 1)
    lines = [
        f"**Large model**: {big['parameters']:,} parameters ({tables}); training loop {big['train_seconds']:.0f} s, "
        f"NDCG@10 {big['ndcg@10']:.4f}. Package: {files}.",
        "",
        "| precision | RSS before load MB | loaded MB | every row hot MB | above the interpreter MB | served tensors MB "
        "| start to ready s | NDCG@10 drop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for precision, r in big["precisions"].items():
        drop = (r.get("gate") or {}).get("drop")
        lines.append(
            f"| {precision} | {r['rss_before_load_mb']:.0f} | {r['rss_loaded_mb']:.0f} | {r['rss_hot_mb']:.0f} "
            f"| {r['model_hot_mb']:.0f} | {r['served_tensor_mb']:.0f} | {r['startup_s']:.1f} | {'-' if drop is None else f'{drop:.4f}'} |"
        )
    lines += [
        "",
        "| precision | score ms (in-process) | NDCG@10 | drop vs fp32 | gate (0.01) |",
        "|---|---|---|---|---|",
    ]
    for precision, r in big.get("gate", {}).items():
        lines.append(
            f"| {precision} | {r['score_ms']:.2f} | {r['ndcg@10']:.4f} | {r['ndcg_drop']:.4f} "
            f"| {'pass' if r['passed_gate'] else 'refused'} |"
        )
    lines += ["", f"Served by kserve-best and the peers (the fastest through the gate): {big['best_precision']}.", ""]
    for size, by_variant in big["serving"].items():
        lines += [
            f"**Large model, {size} candidates per request**",
            "",
            "| variant | concurrency | p50 ms | p95 ms | p99 ms | req/s | CPU ms/req | RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for variant in (*VARIANTS, *PEERS):
            for r in by_variant.get(variant, []):
                lines.append(
                    f"| {variant} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} "
                    f"| {r['rps']:.1f} | {r.get('cpu_ms_per_request', 0):.1f} | {r.get('rss_mb', 0):.0f} |"
                )
        lines.append("")
    lines += _answers(big.get("answers"))
    lines += _errors(big["serving"])
    stages = big.get("stages")
    if stages and "ids_only_request_ms" in stages:
        lines += [
            f"Large model in-process ({stages['precision']}): forward {stages['forward_ms']:.2f} ms, full request "
            f"{stages['request_bytes_in_out_ms']:.2f} ms, ids-only request {stages['ids_only_request_ms']:.2f} ms "
            f"({stages['ids_only_over_forward']:.2f}x the forward pass).",
            "",
        ]
    return lines


def plot_peers(results: dict[str, Any], path: Path) -> None:
    """Requests/s and p99 at concurrency 8, 1,000 candidates: our paths and the peers, small and large model."""
    models = [("small model", results["serving"].get("1000", {}))]
    if results.get("large"):
        models.append(("large model (1.02B)", results["large"]["serving"].get("1000", {})))
    variants = [v for v in ("torchserve", *PEERS, *VARIANTS[2:]) if any(v in rows for _, rows in models)]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(models)
    for m, (label, rows) in enumerate(models):
        at8 = [next((r for r in rows.get(v, []) if r["concurrency"] == 8), None) for v in variants]
        xs = [i + m * width for i in range(len(variants))]
        axes[0].bar(xs, [r["rps"] if r else 0 for r in at8], width, label=label)
        axes[1].bar(xs, [r["p99_ms"] if r else 0 for r in at8], width, label=label)
    for axis, title in zip(axes, ("requests/s (higher is better)", "p99 ms (lower is better)"), strict=True):
        axis.set_xticks(
            [i + width * (len(models) - 1) / 2 for i in range(len(variants))], variants, rotation=30, ha="right"
        )
        axis.set_title(f"{title}, 1,000 candidates, concurrency 8", fontsize=9)
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(results["machine"]["description"], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


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
