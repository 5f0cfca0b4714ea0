"""The packaged model directory that a RecModel's storageUri points at.

manifest.json        format version, name, version, feature schema, model config, metrics
weights.pt           the model's state_dict (fp32), saved so it can be memory-mapped
embeddings-int8.pt   the user and item tables row-wise int8 (codes, fp16 scale and bias per row),
                     what `--precision=int8` serves; memory-mapped too
feature_stats.json   normalization statistics from training
validation.json      a small validation set (documents with true relevance) for the quality gate
items.json           optional: each item's category, brand, price and features as of training,
                     so requests may send candidates as bare ids
retrieval.faiss      with items.json: the catalog's retrieval index (faiss IVF) and its vectors,
retrieval-vectors.npy  so requests may send no candidates at all (`model.retrieval`)
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recmodel_handlers import FORMAT_VERSION
from recmodel_handlers.errors import ModelDirError
from recmodel_handlers.model.embeddings import advise_random, quantize_rows
from recmodel_handlers.model.features import FeatureEncoder, FeatureSchema, FeatureStats, ItemTable
from recmodel_handlers.model.network import ModelConfig, RankingModel
from recmodel_handlers.model.retrieval import INDEX_FILE, VECTORS_FILE, IndexParameters, RetrievalIndex

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
STATS = "feature_stats.json"
VALIDATION = "validation.json"
ITEMS = "items.json"
INT8_TABLES = "embeddings-int8.pt"
OPTIONAL_FILES = (ITEMS, INT8_TABLES, INDEX_FILE, VECTORS_FILE)
REQUIRED_FILES = (MANIFEST, WEIGHTS, STATS, VALIDATION)

Doc = dict[str, Any]


@dataclass
class Package:
    directory: Path
    name: str
    version: str
    schema: FeatureSchema
    config: ModelConfig
    stats: FeatureStats
    model: RankingModel
    validation: list[Doc]
    manifest: dict[str, Any]
    items: ItemTable | None = None
    int8_tables: dict[str, dict[str, torch.Tensor]] | None = None  # state_dict prefix -> quantize_rows()
    retrieval: RetrievalIndex | None = None  # rows in the order of `items`


def catalog_vectors(model: RankingModel, stats: FeatureStats, items: ItemTable) -> np.ndarray:
    """Every item of the table as retrieval sees it (`RankingModel.item_vectors`), in its order."""
    encoded = FeatureEncoder(model.schema, stats, items=items).encoded_items
    if encoded is None:
        raise ModelDirError("the item table has entries the request checks refuse: no retrieval index")
    last = len(encoded.item) - 1  # the last row is for unknown ids
    with torch.no_grad():
        vectors = model.item_vectors(
            encoded.item[:last], encoded.category[:last], encoded.brand[:last], encoded.dense[:last]
        )
    return np.asarray(vectors.float().numpy())


def user_vectors(model: RankingModel, stats: FeatureStats, docs: list[Doc]) -> np.ndarray:
    """The user tower's vectors for the documents' users and contexts."""
    encoder = FeatureEncoder(model.schema, stats)
    with torch.no_grad():
        vectors = model.user_tower.vectors([encoder.encode_user(doc) for doc in docs])
    return np.asarray(vectors.float().numpy())


def build_retrieval(
    model: RankingModel,
    stats: FeatureStats,
    items: ItemTable,
    parameters: IndexParameters | None = None,
    tune_on: list[Doc] | None = None,
) -> RetrievalIndex:
    """The catalog's retrieval index over `catalog_vectors`, its probes tuned on the users of
    `tune_on` (the validation documents) unless `parameters` fix them."""
    queries = user_vectors(model, stats, tune_on) if tune_on else None
    return RetrievalIndex.build(catalog_vectors(model, stats, items), parameters, tune_on=queries)


def save_package(
    directory: Path,
    *,
    model: RankingModel,
    stats: FeatureStats,
    validation: list[Doc],
    metrics: dict[str, Any],
    name: str = "recmodel",
    version: str = "v1",
    parent: dict[str, Any] | None = None,
    items: ItemTable | None = None,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / WEIGHTS)
    torch.save(
        {name: quantize_rows(t.weight.detach()) for name, t in model.id_tables().items()}, directory / INT8_TABLES
    )
    (directory / STATS).write_text(json.dumps(stats.to_json(), indent=2))
    (directory / VALIDATION).write_text(json.dumps(validation))
    if items is not None:
        (directory / ITEMS).write_text(json.dumps(items, separators=(",", ":")))
        build_retrieval(model, stats, items, tune_on=validation).save(directory)
    manifest = {
        "formatVersion": FORMAT_VERSION,
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "featureSchema": model.schema.to_json(),
        "modelConfig": model.config.to_json(),
        "metrics": metrics,
        "parameters": model.parameter_count(),
        "untrainedRows": "rows of the user and item tables no training id hashed to keep their initial "
        "values, normal(0, 1); metrics.tables counts the trained ones",
        "files": list(REQUIRED_FILES),
    }
    if parent is not None:
        manifest["parent"] = parent  # the package this one was warm-started from
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))


def package_files(directory: Path) -> list[Path]:
    """The files a copy of the package needs: the required ones and the optional ones present."""
    return [directory / name for name in (*REQUIRED_FILES, *OPTIONAL_FILES) if (directory / name).is_file()]


def load_package(directory: Path | str) -> Package:
    """Loads and checks a model directory; every problem is a ModelDirError that says what to fix."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(
            f"model directory {directory} does not exist (expected the output of `recmodel train --out`)"
        )
    missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
    if missing:
        raise ModelDirError(f"model directory {directory} is missing {', '.join(missing)}")
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("formatVersion") != FORMAT_VERSION:
            raise ModelDirError(
                f"{directory / MANIFEST}: format version {manifest.get('formatVersion')} is not {FORMAT_VERSION}; repackage the model"
            )
        schema = FeatureSchema.from_json(manifest["featureSchema"])
        config = ModelConfig.from_json(manifest["modelConfig"])
        stats = FeatureStats.from_json(json.loads((directory / STATS).read_text()))
        validation = json.loads((directory / VALIDATION).read_text())
        items = json.loads((directory / ITEMS).read_text()) if (directory / ITEMS).is_file() else None
        retrieval = RetrievalIndex.load(directory) if items and (directory / INDEX_FILE).is_file() else None
    except (ValueError, KeyError, TypeError) as error:
        raise ModelDirError(f"model directory {directory} is corrupt: {error!r}") from error
    # Built on the meta device and given the memory-mapped tensors themselves (assign=True):
    # startup neither initialises nor copies the tables, and replicas on one node share the
    # file's pages in the page cache. Rows are read from disk the first time they are used.
    with torch.device("meta"):
        model = RankingModel(schema, config)
    try:
        state = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True, mmap=True)
        model.load_state_dict(state, assign=True)
        int8_path = directory / INT8_TABLES
        int8 = torch.load(int8_path, map_location="cpu", weights_only=True, mmap=True) if int8_path.is_file() else None
        for name in model.id_tables():
            advise_random(state[f"{name}.weight"])
            for part in (int8 or {}).get(name, {}).values():
                advise_random(part)
    except Exception as error:  # torch raises many kinds for a bad file
        raise ModelDirError(f"{directory / WEIGHTS} cannot be loaded: {error}") from error
    model.eval()
    return Package(
        directory=directory,
        name=str(manifest.get("name", "recmodel")),
        version=str(manifest.get("version", "v1")),
        schema=schema,
        config=config,
        stats=stats,
        model=model,
        validation=validation,
        manifest=manifest,
        items=items,
        int8_tables=int8,
        retrieval=retrieval,
    )
