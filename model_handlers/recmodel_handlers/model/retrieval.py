"""Retrieval: the catalog's items nearest to a user, in the ranker's own vector space.

A user's vector is what the ranker's user tower computes; an item's is made of the scorer's
own tables, its id, category and brand rows plus its projected dense features
(`RankingModel.item_vectors`). Training fits u·v to the labels beside the ranker's loss
(`training.train.RETRIEVAL_WEIGHT`): a two-tower model inside the ranker, so retrieval shares
what ranking learns and has no model of its own.

The index is faiss's inverted file (IVF with flat lists, inner product), memory-mapped from the
package, over the item vectors less their mean: learned item vectors share a large common
part, and uncentered every list points its way (recall@100 0.85 instead of 0.95 on 1M generated items;
lifting to L2 with an extra coordinate did worse, 0.89; docs/retrieval.md). The exact search,
one matrix product over every item, is the reference the index is measured against, and what a
small catalog or a filter that leaves few items is answered with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from recmodel_handlers.errors import RequestError

INDEX_FILE = "retrieval.faiss"
VECTORS_FILE = "retrieval-vectors.npy"
EXACT_BELOW = 20_000  # a catalog or filter of at most this many items: the exact search (< 1 ms)
TRAIN_SAMPLE_PER_LIST = 64  # k-means sees this many vectors per list (faiss warns below 39)
TARGET_RECALL = 0.95  # recall@TUNE_K against the exact search that tuning probes for
TUNE_K = 100


@dataclass(frozen=True)
class IndexParameters:
    """The IVF index's lists (clusters) and how many of them a query scans. The lists follow the
    catalog's size (2·sqrt(items), docs/retrieval.md); the probes are tuned on sample queries
    when the build has them (`RetrievalIndex.build`), else a fifth of the lists."""

    lists: int = 0  # 0: 2·sqrt(items), at most 4096
    probes: int = 0  # 0: tuned, or a fifth of the lists

    def resolved(self, items: int) -> IndexParameters:
        lists = self.lists or max(1, min(4096, round(2 * math.sqrt(items))))
        lists = min(lists, max(1, items // TRAIN_SAMPLE_PER_LIST))
        return IndexParameters(lists=lists, probes=min(lists, self.probes or max(1, math.ceil(lists / 5))))


def _centered(vectors: np.ndarray) -> np.ndarray:
    """The vectors less their mean: q·(v - mean) orders items as q·v does (q·mean is the same
    for every item), and the lists no longer all point the common part's way."""
    return np.ascontiguousarray(vectors - vectors.mean(axis=0, dtype=np.float64).astype(np.float32))


class RetrievalIndex:
    """Rows of `vectors` (one per catalog item) nearest to a query by inner product."""

    def __init__(self, vectors: np.ndarray, ann: Any, probes: int) -> None:
        self.vectors = vectors
        self.ann = ann
        self.probes = probes

    def __len__(self) -> int:
        return len(self.vectors)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        parameters: IndexParameters | None = None,
        seed: int = 0,
        tune_on: np.ndarray | None = None,
    ) -> RetrievalIndex:
        """The index over `vectors`. Unless `parameters` fix the probes, queries `tune_on`
        (user vectors: the package's validation users) choose them: the fewest that reach
        TARGET_RECALL against the exact search, since how many a catalog needs depends on
        the model (0.97 at a fifth of the lists for one, 0.70 for another, docs/retrieval.md)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        chosen = (parameters or IndexParameters()).resolved(len(vectors))
        centered = _centered(vectors)
        quantizer = faiss.IndexFlatIP(centered.shape[1])
        ann = faiss.IndexIVFFlat(quantizer, centered.shape[1], chosen.lists, faiss.METRIC_INNER_PRODUCT)
        sample = min(len(vectors), TRAIN_SAMPLE_PER_LIST * chosen.lists)
        rows = np.random.default_rng(seed).choice(len(vectors), sample, replace=False)
        ann.train(centered[np.sort(rows)])
        ann.add(centered)
        index = cls(vectors, ann, chosen.probes)
        if tune_on is not None and len(tune_on) and not (parameters and parameters.probes):
            index.probes = index.tuned_probes(tune_on, chosen.lists)
        return index

    def scans_most(self) -> bool:
        """Probing half the lists or more costs more than the exact search (measured: 1,430 of
        2,000 lists took 17 ms where the exact search took 12), which then answers instead."""
        return 2 * self.probes >= int(faiss.extract_index_ivf(self.ann).nlist)

    def recall(self, queries: np.ndarray, k: int = TUNE_K, truth: list[np.ndarray] | None = None) -> float:
        """Mean recall@k of `search` against `exact` over `queries`."""
        truth = truth or [self.exact(q, k) for q in queries]
        found = [self.search(q, k) for q in queries]
        return float(
            np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)])
        )

    def tuned_probes(self, queries: np.ndarray, lists: int) -> int:
        """The fewest probes (growing by half from a sixteenth of the lists) whose recall on
        `queries` reaches TARGET_RECALL; every list if none does."""
        if len(self.vectors) <= EXACT_BELOW:
            return self.probes  # searched exactly anyway
        truth = [self.exact(q, TUNE_K) for q in queries]
        probes = max(1, lists // 16)
        while True:
            self.probes = probes
            if probes >= lists or self.recall(queries, TUNE_K, truth) >= TARGET_RECALL:
                return probes
            probes = min(lists, math.ceil(probes * 1.5))

    def save(self, directory: Path) -> None:
        np.save(directory / VECTORS_FILE, self.vectors)
        faiss.extract_index_ivf(self.ann).nprobe = self.probes  # stored with the index
        faiss.write_index(self.ann, str(directory / INDEX_FILE))

    @classmethod
    def load(cls, directory: Path) -> RetrievalIndex:
        """Both files memory-mapped: replicas on one node share their pages."""
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r")
        ann = faiss.read_index(str(directory / INDEX_FILE), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        return cls(vectors, ann, faiss.extract_index_ivf(ann).nprobe)

    def exact(self, query: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """The n best rows by inner product (best first), among `allowed` ones if given."""
        if allowed is None:
            scores = self.vectors @ query
            rows = np.arange(len(scores))
        else:
            rows = np.flatnonzero(allowed)
            scores = self.vectors[rows] @ query
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        return np.asarray(rows[top[np.argsort(-scores[top], kind="stable")]], dtype=np.int64)

    def search(self, query: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """The approximately best n rows (best first), among `allowed` ones if given."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if len(self.vectors) <= EXACT_BELOW or self.scans_most():
            return self.exact(query, n, allowed)
        parameters = faiss.SearchParametersIVF()
        parameters.nprobe = self.probes
        available = len(self.vectors)
        if allowed is not None:
            available = int(allowed.sum())
            if available <= EXACT_BELOW:
                return self.exact(query, n, allowed)
            bitmap = np.packbits(allowed, bitorder="little")  # alive until the search returns
            parameters.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
        _, found = self.ann.search(query[None, :], n, params=parameters)
        rows = found[0][found[0] >= 0]
        if len(rows) < min(n, available):  # the probed lists held too few allowed items
            return self.exact(query, n, allowed)
        return np.asarray(rows, dtype=np.int64)


@dataclass(frozen=True)
class RetrievalQuery:
    """What a request without candidates asks retrieval for."""

    candidates: int
    categories: frozenset[str] | None = None
    min_price: float | None = None
    max_price: float | None = None


def _price(filters: Mapping[str, Any], name: str) -> float | None:
    value = filters.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise RequestError(f"filters.{name}", "must be a number >= 0")
    return float(value)


def parse_query(doc: Mapping[str, Any], default: int, limit: int) -> RetrievalQuery:
    """`retrieve` (how many candidates, 1..limit) and `filters` of a request without candidates."""
    count = doc.get("retrieve", default)
    if type(count) is not int or not 1 <= count <= limit:
        raise RequestError("retrieve", f"must be an integer from 1 to {limit}: how many candidates to retrieve")
    filters = doc.get("filters") or {}
    if type(filters) is not dict:
        raise RequestError("filters", "must be an object (categories, minPrice, maxPrice)")
    unknown = sorted(set(filters) - {"categories", "minPrice", "maxPrice"})
    if unknown:
        raise RequestError(f"filters.{unknown[0]}", "is not a filter (categories, minPrice, maxPrice)")
    categories = filters.get("categories")
    if categories is not None and (type(categories) is not list or any(type(c) is not str for c in categories)):
        raise RequestError("filters.categories", "must be a list of category names (strings)")
    low, high = _price(filters, "minPrice"), _price(filters, "maxPrice")
    if low is not None and high is not None and low > high:
        raise RequestError("filters.minPrice", "must not be above filters.maxPrice")
    return RetrievalQuery(count, None if categories is None else frozenset(categories), low, high)


class Catalog:
    """The catalog's items in the index's row order, with what the filters read."""

    def __init__(self, ids: list[str], categories: list[str], prices: np.ndarray) -> None:
        self.ids = ids
        self.row = {item_id: row for row, item_id in enumerate(ids)}
        names = sorted(set(categories))
        self._category_code = {name: code for code, name in enumerate(names)}
        self.category_codes = np.array([self._category_code[c] for c in categories], dtype=np.int32)
        self.prices = np.asarray(prices, dtype=np.float32)  # NaN: no price

    def allowed(self, query: RetrievalQuery, exclude: frozenset[str]) -> np.ndarray | None:
        """The rows the query's filters and the request's `exclude` leave (None: every row)."""
        if query.categories is None and query.min_price is None and query.max_price is None and not exclude:
            return None
        mask = np.ones(len(self.ids), dtype=bool)
        if query.categories is not None:
            codes = [self._category_code[c] for c in query.categories if c in self._category_code]
            mask &= np.isin(self.category_codes, np.array(codes, dtype=np.int32))
        if query.min_price is not None:
            mask &= self.prices >= query.min_price  # NaN compares false: an item without a price goes
        if query.max_price is not None:
            mask &= self.prices <= query.max_price
        excluded = [self.row[i] for i in exclude if i in self.row]
        mask[excluded] = False
        return mask
