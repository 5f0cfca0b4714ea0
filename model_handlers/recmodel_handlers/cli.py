"""`recmodel train | package | serve | predict | fetch | bench`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _next_version(version: str) -> str:
    import re

    match = re.fullmatch(r"(.*?)(\d+)", version)
    return f"{match.group(1)}{int(match.group(2)) + 1}" if match else f"{version}.1"


def _retrain(args: argparse.Namespace) -> None:
    """`train --from DIR --data new.csv`: warm start from a packaged model, refuse a regression."""
    from recmodel_handlers.model.features import build_item_table
    from recmodel_handlers.model.package import load_package, save_package
    from recmodel_handlers.ranking.quality import K
    from recmodel_handlers.training.data import load_csv
    from recmodel_handlers.training.train import retrain

    if not args.data:
        raise SystemExit("--from needs --data: the new interactions (CSV) to train on")
    parent = load_package(args.from_dir)
    docs = load_csv(Path(args.data))
    if args.validation:
        train_docs, validation = docs, load_csv(Path(args.validation))
    else:  # the log is in time order: validate on its most recent tenth
        split = max(1, int(len(docs) * 0.9))
        train_docs, validation = docs[:split], docs[split:]
    if not train_docs or not validation:
        raise SystemExit(f"{args.data}: too few sessions to train and validate on ({len(docs)})")
    result = retrain(
        parent.model,
        parent.stats,
        train_docs,
        validation,
        epochs=args.epochs,
        seed=args.seed,
        log=lambda m: print(m, file=sys.stderr),
    )
    ndcg = f"ndcg@{K}"
    print(f"{'metric':<12}{'new':>10}{'parent':>10}   (on {len(validation)} new validation sessions)")
    for key in result.metrics["model"]:
        print(f"{key:<12}{result.metrics['model'][key]:>10.4f}{result.metrics['parent'][key]:>10.4f}")
    if result.regression > args.max_regression:
        raise SystemExit(
            f"refused: the new model's {ndcg} is {result.regression:.4f} below its parent "
            f"{parent.name} {parent.version} on the new data (allowed: {args.max_regression}); nothing written"
        )
    version = args.version if args.version != "v1" else _next_version(parent.version)
    save_package(
        Path(args.out),
        model=result.model,
        stats=parent.stats,
        validation=parent.validation,
        metrics=result.metrics,
        name=parent.name if args.name == "recmodel" else args.name,
        version=version,
        parent={
            "name": parent.name,
            "version": parent.version,
            "created": parent.manifest.get("created"),
            "directory": str(Path(args.from_dir).resolve()),
            ndcg: result.metrics["parent"][ndcg],
        },
        items={**(parent.items or {}), **build_item_table(train_docs)},
    )
    print(f"packaged {version} (from {parent.version}) in {args.out}")


def _train(args: argparse.Namespace) -> None:
    if args.from_dir:
        _retrain(args)
        return
    from recmodel_handlers.model.features import FeatureSchema, build_item_table
    from recmodel_handlers.model.network import ModelConfig
    from recmodel_handlers.model.package import save_package
    from recmodel_handlers.training.data import load_csv, make_world, sample_documents
    from recmodel_handlers.training.train import SIZES, train

    size = SIZES[args.size]
    candidates_per_doc = 20
    if args.data:
        docs = load_csv(Path(args.data))
        split = max(1, int(len(docs) * 0.9))
        train_docs, test_docs = docs[:split], docs[split:]
        validation = test_docs[: args.validation_docs]
    else:
        world = make_world(args.seed, n_users=size.world_users, n_items=size.world_items)
        train_docs = sample_documents(
            world, max(1, args.rows // candidates_per_doc), candidates_per_doc, seed=args.seed + 1
        )
        test_docs = sample_documents(world, 300, 100, seed=args.seed + 2)
        validation = sample_documents(world, args.validation_docs, 100, seed=args.seed + 3)
    config = ModelConfig(dim=args.dim or size.dim, hidden=tuple(args.hidden), sparse=size.sparse)
    schema = FeatureSchema(
        user_buckets=args.user_buckets or size.user_buckets, item_buckets=args.item_buckets or size.item_buckets
    )
    result = train(
        train_docs,
        test_docs,
        schema=schema,
        config=config,
        epochs=args.epochs,
        seed=args.seed,
        log=lambda m: print(m, file=sys.stderr),
    )
    save_package(
        Path(args.out),
        model=result.model,
        stats=result.stats,
        validation=validation,
        metrics=result.metrics,
        name=args.name,
        version=args.version,
        items=build_item_table(train_docs),
    )
    model, baseline = result.metrics["model"], result.metrics["popularity"]
    print(f"{'metric':<12}{'model':>10}{'popularity':>12}")
    for key in model:
        print(f"{key:<12}{model[key]:>10.4f}{baseline[key]:>12.4f}")
    print(f"packaged model in {args.out} ({result.model.parameter_count():,} parameters)")


def _package(args: argparse.Namespace) -> None:
    from recmodel_handlers.serving.torchserve_store import build_model_store

    build_model_store(
        Path(args.model_dir),
        Path(args.torchserve),
        max_batch_size=args.max_batch_size,
        max_latency_ms=args.max_latency_ms,
        workers=args.workers,
        inference_address=args.inference_address,
    )
    print(f"TorchServe model store in {args.torchserve}")


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own malloc arena and rarely returns their
    memory: with the event loop, the scoring thread and the executor, a stream of fresh ids
    grew the server by 100 MB per 4,500 requests; two arenas keep it flat (MALLOC_ARENA_MAX=2,
    set here before any thread starts, so pods need no environment for it)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    m_arena_max = -8  # from glibc's malloc.h
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):
        libc.mallopt(m_arena_max, arenas)


def _serve(args: argparse.Namespace) -> None:
    _limit_malloc_arenas()
    from recmodel_handlers.serving.kserve_model import serve
    from recmodel_handlers.settings import CoreSettings, ServerSettings

    serve(
        model_dir=args.model_dir,
        name=args.name,
        host=args.host,
        port=args.http_port,
        role=args.role,
        predictor_host=args.predictor_host,
        settings=CoreSettings.from_namespace(args),
        server=ServerSettings.from_namespace(args),
    )


def _predict(args: argparse.Namespace) -> None:
    from recmodel_handlers.tools.client import predict

    request = json.loads(Path(args.request).read_text())
    result = predict(args.url, args.name, request, host=args.host, protocol=args.protocol)
    for index, prediction in enumerate(result["predictions"]):
        print(f"instance {index}: model {prediction['model']} {prediction['version']}, {result['latency_ms']:.1f} ms")
        for rank, item in enumerate(prediction["items"], start=1):
            print(f"  {rank:>3}. {item['id']:<16} {item['score']:.4f}")


def _explain(args: argparse.Namespace) -> None:
    from recmodel_handlers.tools.client import explain
    from recmodel_handlers.tools.explain_view import heat_map, table

    request = json.loads(Path(args.request).read_text())
    for index, explanation in enumerate(explain(args.url, args.name, request, host=args.host)["explanations"]):
        print(f"instance {index}: model {explanation['model']} {explanation['version']}, {explanation['method']}")
        print(table(explanation))
        if args.png:
            out = Path(args.png) if index == 0 else Path(args.png).with_stem(f"{Path(args.png).stem}-{index}")
            heat_map(explanation, out)
            print(f"heat map in {out}")


def _fetch(args: argparse.Namespace) -> None:
    from recmodel_handlers.tools.storage import fetch

    print(fetch(args.uri, Path(args.out)))


def _bench(args: argparse.Namespace) -> None:
    from recmodel_handlers.tools.stage_bench import run

    print(json.dumps(run(Path(args.model_dir), candidates=args.candidates, repeat=args.repeat), indent=2))


def _request_command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command that sends one request to a served model."""
    command: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    command.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    command.add_argument("--name", required=True)
    command.add_argument("--request", required=True, help='JSON file: a ranking document or {"instances": [...]}')
    command.add_argument("--host", help="Host header, as an ingress routes by it")
    return command


def build_parser() -> argparse.ArgumentParser:
    from recmodel_handlers.settings import CoreSettings, ServerSettings

    parser = argparse.ArgumentParser(
        prog="recmodel", description="RecModel ranking models: train, package, serve, predict"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on generated data (or --data FILE.csv) and package the model")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--rows", type=int, default=200_000, help="training rows (candidate impressions) to generate")
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data", help="interaction log CSV (user,item,event,timestamp,category,brand,price,...)")
    train.add_argument(
        "--size",
        choices=("small", "large"),
        default="small",
        help="small: 2.4M parameters; large: 1.02B (4M user and 12M item rows of 64, sparse row-wise Adagrad, "
        "a 50,000-item shop)",
    )
    train.add_argument("--dim", type=int, default=None, help="embedding size (default: the size's, 48 or 64)")
    train.add_argument("--user-buckets", type=int, default=None, help="rows of the user table (default: the size's)")
    train.add_argument("--item-buckets", type=int, default=None, help="rows of the item table (default: the size's)")
    train.add_argument("--hidden", type=int, nargs="+", default=[256, 128], help="MLP layer sizes")
    train.add_argument("--validation-docs", type=int, default=60, help="documents kept for the quality gate")
    train.add_argument("--name", default="recmodel")
    train.add_argument("--version", default="v1", help="with --from: default the parent's version plus one")
    train.add_argument("--from", dest="from_dir", help="warm-start from this packaged model (needs --data)")
    train.add_argument("--validation", help="with --from: validation CSV (default: the newest tenth of --data)")
    train.add_argument(
        "--max-regression",
        type=float,
        default=0.01,
        help="with --from: refuse (exit 1, write nothing) when NDCG@10 drops more than this below the parent",
    )
    train.set_defaults(func=_train)

    package = commands.add_parser("package", help="build a TorchServe model store from a model directory")
    package.add_argument("--model-dir", required=True)
    package.add_argument("--torchserve", required=True, help="output folder: model-store/ and config/config.properties")
    package.add_argument("--max-batch-size", type=int, default=32)
    package.add_argument("--max-latency-ms", type=int, default=5)
    package.add_argument("--workers", type=int, default=1)
    package.add_argument("--inference-address", default="http://0.0.0.0:8080")
    package.set_defaults(func=_package)

    serve = commands.add_parser("serve", help="serve a model directory with KServe's model server")
    serve.add_argument("--model-dir", "--model_dir", dest="model_dir", required=True)
    serve.add_argument("--name", "--model_name", dest="name", required=True)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (the image uses 0.0.0.0)")
    serve.add_argument("--http-port", "--http_port", dest="http_port", type=int, default=8080)
    serve.add_argument("--role", choices=("all", "transformer", "predictor"), default="all")
    serve.add_argument(
        "--predictor-host",
        "--predictor_host",
        dest="predictor_host",
        default=None,
        help="host:port of the predictor (role transformer)",
    )
    CoreSettings.add_arguments(serve)
    ServerSettings.add_arguments(serve)
    serve.set_defaults(func=_serve)

    predict = _request_command(commands, "predict", "send a ranking request and print the ranking")
    predict.add_argument("--protocol", choices=("v1", "v2"), default="v1")
    predict.set_defaults(func=_predict)

    explain = _request_command(commands, "explain", "why each item ranks where it does: contribution per feature group")
    explain.add_argument("--png", help="also draw a heat map (items x feature groups) into this PNG (needs matplotlib)")
    explain.set_defaults(func=_explain)

    fetch = commands.add_parser("fetch", help="download a model (s3:// gs:// https:// file://) into a folder")
    fetch.add_argument("--uri", required=True)
    fetch.add_argument("--out", required=True)
    fetch.set_defaults(func=_fetch)

    bench = commands.add_parser("bench", help="time each stage of one request in-process")
    bench.add_argument("--model-dir", required=True)
    bench.add_argument("--candidates", type=int, default=1000)
    bench.add_argument("--repeat", type=int, default=50)
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
