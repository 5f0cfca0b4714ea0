"""The ranking core: one object behind both servers.

encode (validate + features) -> score (one forward pass over all candidates of one or many
requests, user vectors from the cache) -> finish (rules, top-K, response document).
"""

from __future__ import annotations

import gc
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recmodel_handlers.errors import QualityGateError
from recmodel_handlers.model import inputs
from recmodel_handlers.model.embeddings import release_pages
from recmodel_handlers.model.features import (
    CandidateFeatures,
    EncodedRequest,
    FeatureEncoder,
    RankingRules,
    UserFeatures,
)
from recmodel_handlers.model.network import RankingModel
from recmodel_handlers.model.package import Package, load_package
from recmodel_handlers.model.retrieval import Catalog, parse_query
from recmodel_handlers.ranking import request
from recmodel_handlers.ranking.cache import LruTtlCache
from recmodel_handlers.ranking.explain import EXPLAIN_METHOD, MAX_EXPLAINED, explain, groups_of
from recmodel_handlers.ranking.precision import GateResult, compiled, quality_gate, with_precision
from recmodel_handlers.ranking.rules import ItemVectors, rank_items
from recmodel_handlers.settings import CoreSettings

log = logging.getLogger(__name__)
Doc = dict[str, Any]


def tune_for_serving() -> None:
    """Once the model is loaded: move everything alive into the permanent generation and make
    the cyclic GC rare. Requests allocate thousands of short-lived dicts (freed by reference
    counting) that would otherwise trigger full collections and 4x p99 latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    # The event loop and the scoring thread hand the GIL back and forth many times a request;
    # at Python's default 5 ms switch interval each hand-over can cost up to 5 ms (measured:
    # unloaded p99 12.5 -> 9.2 ms, 1,000 candidates).
    sys.setswitchinterval(0.0005)


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _as_documents(docs: list[Any]) -> request.Documents:
    """Documents handed over in-process, named in errors as the V1 envelope would name them."""
    return request.Documents(docs, [f"instances[{i}]" for i in range(len(docs))])


@dataclass
class ScoredBatch:
    scores: list[np.ndarray]
    cache_hits: int
    candidates: int


class RankingCore:
    def __init__(self, package: Package, settings: CoreSettings, device: torch.device | None = None) -> None:
        self.package = package
        self.settings = settings
        self.name = package.name
        self.version = package.version
        self.device = device or pick_device()
        self.encoder = FeatureEncoder(
            package.schema, package.stats, settings.top_k, settings.max_candidates, items=package.items
        )
        self.gate: GateResult | None = None
        self.gate_error: QualityGateError | None = None
        self.precision = "fp32"
        self.model = self._optimize(package.model, settings)
        self.cache: LruTtlCache[torch.Tensor] = LruTtlCache(
            settings.cache_entries,
            settings.cache_ttl_seconds,
            max_bytes=settings.cache_max_bytes,
            size_of=lambda vector: vector.element_size() * vector.nelement() + 80,  # + tensor object
        )
        self.catalog: Catalog | None = None
        if settings.retrieval and package.retrieval is not None and package.items:
            self.catalog = Catalog(
                list(package.items),
                [str(fields.get("category") or "") for fields in package.items.values()],
                np.array([fields.get("price", np.nan) for fields in package.items.values()], dtype=np.float32),
            )
            self.encoder.retriever = self._retrieve
        self._warm_up()

    @classmethod
    def from_dir(cls, model_dir: Path | str, settings: CoreSettings | None = None, **kwargs: Any) -> RankingCore:
        return cls(load_package(model_dir), settings or CoreSettings(), **kwargs)

    # -- setup -----------------------------------------------------------------------------
    def _optimize(self, model: RankingModel, settings: CoreSettings) -> RankingModel:
        reference = model.to(self.device)
        chosen = reference
        if settings.precision != "fp32":
            # .to(): the package's int8 tables are loaded (memory-mapped) on the CPU.
            candidate = with_precision(reference, settings.precision, self.package.int8_tables).to(self.device)
            self.gate = quality_gate(
                reference,
                candidate,
                settings.precision,
                self.encoder,
                self.package.validation,
                settings.max_quality_drop,
            )
            log.info(self.gate.describe())
            if self.gate.passed:
                chosen, self.precision = candidate, settings.precision
                if self.precision == "int8":  # it reads its own int8 tables from here on
                    for table in reference.id_tables().values():
                        release_pages(table.weight)
            else:
                self.gate_error = QualityGateError(settings.precision, self.gate.drop, settings.max_quality_drop)
                log.error(str(self.gate_error))
        if settings.compile:
            chosen = compiled(chosen)
        return chosen

    def _warm_up(self) -> None:
        """First-call costs (compilation, allocator) are paid before the server says ready."""
        if self.package.validation:
            sample = {k: v for k, v in self.package.validation[0].items()}
            for size in (1, 17, len(sample["candidates"])):
                self.rank([{**sample, "candidates": sample["candidates"][:size]}])
            self.cache.hits = self.cache.misses = 0

    # -- the pipeline ----------------------------------------------------------------------
    def encode(self, doc: object) -> EncodedRequest:
        return self.encoder.encode(doc)

    @torch.inference_mode()
    def _user_vectors(self, users: list[UserFeatures]) -> torch.Tensor:
        return self.model.user_tower.vectors(users, self.device)

    def _retrieve(self, user: UserFeatures, doc: Doc, rules: RankingRules) -> list[str]:
        """A request without candidates: the catalog's items nearest to its user's vector that
        its filters and `exclude` allow. The vector is cached, so scoring them reuses it."""
        assert self.catalog is not None and self.package.retrieval is not None
        query = parse_query(doc, self.settings.retrieval_candidates, self.settings.max_candidates)
        vector = self.cache.get(user.key)
        if vector is None:
            vector = self._user_vectors([user])[0].clone()
            self.cache.put(user.key, vector)
        allowed = self.catalog.allowed(query, rules.exclude)
        rows = self.package.retrieval.search(vector.float().cpu().numpy(), query.candidates, allowed)
        return [self.catalog.ids[row] for row in rows]

    @torch.inference_mode()
    def score(self, requests: list[EncodedRequest]) -> ScoredBatch:
        """One forward pass over every candidate of every request; user vectors cached."""
        user_vectors: list[torch.Tensor | None] = [self.cache.get(r.user.key) for r in requests]
        hits = sum(v is not None for v in user_vectors)
        missing = [i for i, v in enumerate(user_vectors) if v is None]
        if missing:
            fresh = self._user_vectors([requests[i].user for i in missing])
            for j, i in enumerate(missing):
                user_vectors[i] = fresh[j]
                # A copy: a view would keep the whole batch's storage alive in the cache.
                self.cache.put(requests[i].user.key, fresh[j].clone())
        sizes = [len(r.candidates.ids) for r in requests]
        if len(requests) == 1:
            c = requests[0].candidates
            item, category, brand, dense = c.item, c.category, c.brand, c.dense
        else:
            item = torch.cat([r.candidates.item for r in requests])
            category = torch.cat([r.candidates.category for r in requests])
            brand = torch.cat([r.candidates.brand for r in requests])
            dense = torch.cat([r.candidates.dense for r in requests])
        stacked = torch.stack([v for v in user_vectors if v is not None])
        owner = torch.repeat_interleave(
            torch.arange(len(requests), device=self.device), torch.tensor(sizes, device=self.device)
        )
        logits = self.model.scorer(
            stacked[owner],
            item.to(self.device),
            category.to(self.device),
            brand.to(self.device),
            dense.to(self.device),
        )
        scores = torch.sigmoid(logits.float()).cpu().numpy()
        return ScoredBatch(scores=np.split(scores, np.cumsum(sizes)[:-1]), cache_hits=hits, candidates=sum(sizes))

    @torch.inference_mode()
    def score_tensors(self, tensors: inputs.Tensors) -> np.ndarray:
        """The predictor role: the model's input tensors (`model.inputs`) in, probabilities out."""
        logits = self.model(*(t.to(self.device) for t in inputs.ordered(tensors)))
        return np.asarray(torch.sigmoid(logits.float()).cpu().numpy())

    def item_vectors(self, candidates: CandidateFeatures) -> ItemVectors:
        """The retrieval vectors of some of these candidates, for the diversity rule (MMR)."""
        model = self.package.model
        device = next(model.parameters()).device

        @torch.inference_mode()
        def of(rows: np.ndarray) -> np.ndarray:
            at = torch.from_numpy(rows)
            parts = (candidates.item[at], candidates.category[at], candidates.brand[at], candidates.dense[at])
            return np.asarray(model.item_vectors(*(t.to(device) for t in parts)).float().cpu().numpy())

        return of

    def finish(
        self, encoded: EncodedRequest, scores: np.ndarray, passed_over: list[tuple[str, str]] | None = None
    ) -> Doc:
        """The rules and top-K over one request's scores; `passed_over` as `rank_items` fills it."""
        candidates = encoded.candidates
        items = rank_items(candidates, scores, encoded.rules, passed_over, self.item_vectors(candidates))
        return request.prediction(items, self.name, self.version)

    def explain(self, docs: list[Any]) -> list[Doc]:
        return self.explain_documents(_as_documents(docs))

    def explain_documents(self, found: request.Documents) -> list[Doc]:
        """The ranking, each shown item with its score's Shapley values per feature group
        (`recmodel_handlers.ranking.explain`); at most MAX_EXPLAINED items per document."""
        model = self.model if isinstance(self.model, RankingModel) else self.package.model
        encoded = request.encode(self.encoder, found)
        batch = self.score(encoded)
        results = []
        for one, scores in zip(encoded, batch.scores, strict=True):
            passed_over: list[tuple[str, str]] = []
            ranked = self.finish(one, scores, passed_over)
            if passed_over:  # higher-scored candidates a rule kept out of the list, and which rule
                ranked["passedOver"] = [{"id": item_id, "rule": rule} for item_id, rule in passed_over]
            position = {cid: i for i, cid in enumerate(one.candidates.ids)}
            shown = ranked["items"][:MAX_EXPLAINED]
            if not shown:  # every candidate excluded: nothing to explain, as :predict answers
                ranked.update(groups=groups_of(model), method=EXPLAIN_METHOD)
                results.append(ranked)
                continue
            why = explain(model, one, [position[item["id"]] for item in shown], self.device)
            ranked["items"] = [{**item, **why.item(k)} for k, item in enumerate(shown)] + ranked["items"][
                MAX_EXPLAINED:
            ]
            ranked["groups"] = why.groups
            ranked["method"] = EXPLAIN_METHOD
            results.append(ranked)
        return results

    def rank(self, docs: list[Any]) -> list[Doc]:
        """Documents in, ranked results out, all in one forward pass."""
        return self.rank_documents(_as_documents(docs))

    def rank_documents(self, found: request.Documents) -> list[Doc]:
        encoded = request.encode(self.encoder, found)
        batch = self.score(encoded)
        return [self.finish(r, s) for r, s in zip(encoded, batch.scores, strict=True)]

    def rank_body(self, body: bytes) -> bytes:
        """Bytes in, bytes out: the whole V1 request without any server around it."""
        found = request.decode(body, self.settings.max_request_candidates)
        return request.v1_response(self.rank_documents(found))

    def describe(self) -> Doc:
        return {
            "name": self.name,
            "version": self.version,
            "precision": self.precision,
            "requestedPrecision": self.settings.precision,
            "compiled": self.settings.compile,
            "device": str(self.device),
            "qualityGate": self.gate.to_json() if self.gate else None,
        }
