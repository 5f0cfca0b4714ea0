"""Feature preprocessing shared by training and serving.

A ranking document (user, context, candidates) becomes integer bucket ids for the sparse
fields and normalized floats for the dense ones, with statistics saved at training time.
Unknown ids hash into buckets; missing fields take the training mean. Validation of the
request happens in the same single pass over the candidates, so a bad field costs nothing
extra to find and is reported by name.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from typing import Any, NoReturn

import numpy as np
import torch

from recmodel_handlers.errors import RequestError

Doc = dict[str, Any]


@dataclass(frozen=True)
class FeatureSchema:
    user_buckets: int = 20_000
    item_buckets: int = 20_000
    category_buckets: int = 512
    brand_buckets: int = 2_048
    segment_buckets: int = 16
    device_buckets: int = 16
    query_buckets: int = 4_096
    max_query_tokens: int = 8
    user_dense: tuple[str, ...] = ("clicks_7d", "purchases_30d", "sessions_7d")
    # "price" is the candidate's own field; the others come from candidate.features.
    item_dense: tuple[str, ...] = ("price", "popularity", "rating", "discount")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSchema:
        data = dict(data)
        data["user_dense"] = tuple(data["user_dense"])
        data["item_dense"] = tuple(data["item_dense"])
        return cls(**data)


@dataclass(frozen=True)
class DenseStats:
    """Mean and standard deviation of log1p(value), per dense field."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, rows: np.ndarray) -> DenseStats:
        logged = np.log1p(np.clip(rows, 0, None))
        mean = np.nanmean(logged, axis=0)
        std = np.nanstd(logged, axis=0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        std = np.where(np.isnan(std) | (std < 1e-6), 1.0, std)
        return cls(tuple(float(x) for x in mean), tuple(float(x) for x in std))


@dataclass(frozen=True)
class FeatureStats:
    user: DenseStats
    item: DenseStats

    def to_json(self) -> dict[str, Any]:
        return {"user": asdict(self.user), "item": asdict(self.item)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureStats:
        return cls(
            user=DenseStats(tuple(data["user"]["mean"]), tuple(data["user"]["std"])),
            item=DenseStats(tuple(data["item"]["mean"]), tuple(data["item"]["std"])),
        )


@dataclass
class UserFeatures:
    """One request's user and context, as model inputs (batch of 1)."""

    key: str  # what the per-user cache is keyed by
    user: torch.Tensor
    segment: torch.Tensor
    device: torch.Tensor
    query: torch.Tensor  # [1, max_query_tokens], 0 = padding
    dense: torch.Tensor  # [1, len(user_dense)]


@dataclass
class CandidateFeatures:
    ids: list[str]
    categories: list[str]  # "" where none; categories, brands and sellers are for the rules
    brands: list[str]
    item: torch.Tensor
    category: torch.Tensor
    brand: torch.Tensor
    dense: torch.Tensor  # [N, len(item_dense)]
    sellers: list[str] | None = None  # None when no candidate names one
    out_of_stock: list[int] = field(default_factory=list)  # positions of `inStock: false` candidates


@dataclass(frozen=True)
class EncodedItems:
    """The item table, encoded: row i is the item `index` maps to i; the last row is for ids
    the table does not know."""

    index: dict[str, int]
    categories: np.ndarray  # category, brand and seller names (object), for the ranking rules
    brands: np.ndarray
    sellers: np.ndarray | None
    out_of_stock: np.ndarray  # bool per row
    item: torch.Tensor  # hashed ids (the last row's is computed per request)
    category: torch.Tensor
    brand: torch.Tensor
    dense: torch.Tensor


@dataclass
class RankingRules:
    top_k: int
    exclude: frozenset[str] = field(default_factory=frozenset)
    max_per_category: int | None = None
    max_per_brand: int | None = None
    max_seller_share: float | None = None  # of the top-K slots, per seller
    diversity: float | None = None  # MMR's weight on dissimilarity to the items already chosen

    def seller_cap(self) -> int | None:
        """The most slots one seller may take: the share of top-K, rounded down, at least 1."""
        if self.max_seller_share is None:
            return None
        return max(1, math.floor(self.max_seller_share * self.top_k + 1e-9))


@dataclass
class EncodedRequest:
    user: UserFeatures
    candidates: CandidateFeatures
    rules: RankingRules


class _Hasher:
    """Stable hashing of strings into buckets 1..n-1 (0 means missing), memoized.

    The memo is bounded in bytes (a stream of fresh ids must not grow the process): when
    full it starts over, which costs one crc32 per id until the hot ids are back."""

    MEMO_BYTES = 8 * 2**20
    ENTRY_OVERHEAD = 120  # dict slot, str header, int object

    def __init__(self, namespace: str, buckets: int) -> None:
        self._salt = namespace.encode() + b"\x1f"
        self._mod = buckets - 1
        self._memo: dict[str, int] = {}
        self.memo_bytes = 0

    def __call__(self, value: str) -> int:
        bucket = self._memo.get(value)
        if bucket is None:
            bucket = 1 + zlib.crc32(self._salt + value.encode()) % self._mod
            cost = len(value) + self.ENTRY_OVERHEAD
            if self.memo_bytes + cost > self.MEMO_BYTES:
                self._memo.clear()
                self.memo_bytes = 0
            self._memo[value] = bucket
            self.memo_bytes += cost
        return bucket

    def many(self, values: list[str | None]) -> torch.Tensor:
        """Buckets of many values; None and "" are 0 (missing)."""
        buckets = list(map(self._memo.get, values))  # type: ignore[arg-type]
        if None in buckets:
            buckets = [b if b is not None else (self(v) if v else 0) for b, v in zip(buckets, values, strict=True)]
        return torch.from_numpy(np.array(buckets, dtype=np.int64))


_STR = {str}
_DICT = {dict}
_STR_OR_INT = {str, int}
_OPTIONAL_STR = {str, type(None)}
_OPTIONAL_DICT = {dict, type(None)}
_OPTIONAL_NUMBER = {float, int, type(None)}
_OPTIONAL_BOOL = {bool, type(None)}
_NONE = {type(None)}
_EMPTY: dict[str, Any] = {}


FLOAT32_MAX = float(np.finfo(np.float32).max)
NUMBER = f"a finite number within float32's range (+/-{FLOAT32_MAX:.1e})"


def _is_number(value: object) -> bool:
    """What the model can take: a float32 (a larger finite value would saturate every score)."""
    return (type(value) is float or type(value) is int) and -FLOAT32_MAX <= value <= FLOAT32_MAX  # type: ignore[operator]


def _optional_str(value: object, where: str) -> str | None:
    if value is None or type(value) is str:
        return value  # type: ignore[return-value]
    if type(value) is int:
        return str(value)
    raise RequestError(where, f"must be a string, got {type(value).__name__}")


def _raise_duplicate(ids: list[str]) -> NoReturn:
    """Duplicates are refused, not merged: two entries with one id may carry different
    features, and no answer could say which of them was ranked."""
    first: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if cid in first:
            raise RequestError(f"candidates[{i}].id", f"repeats candidates[{first[cid]}].id {cid[:64]!r}")
        first[cid] = i
    raise AssertionError("no duplicate found")


ItemTable = dict[str, Doc]  # item id -> its candidate fields (category, brand, seller, price, ...)
MODEL_FIELDS = ("category", "brand", "price", "features")  # what the scorer reads
ITEM_FIELDS = (*MODEL_FIELDS, "seller", "inStock")  # and what only the rules read


def build_item_table(docs: Iterable[Doc]) -> ItemTable:
    """Each item's fields as last seen in the documents (training time), for ids-only requests."""
    table: ItemTable = {}
    for doc in docs:
        for candidate in doc["candidates"]:
            table[str(candidate["id"])] = {k: candidate[k] for k in ITEM_FIELDS if candidate.get(k) is not None}
    return table


class FeatureEncoder:
    """Documents in, model inputs out. One instance per model; thread-safe for reads.

    A candidate may be a bare id (`"sku-1"`) or an object with only some fields: the rest come
    from the item table packaged with the model, and what the request sends wins."""

    def __init__(
        self,
        schema: FeatureSchema,
        stats: FeatureStats,
        default_top_k: int = 50,
        max_candidates: int = 1000,
        items: ItemTable | None = None,
    ) -> None:
        self.schema = schema
        self.stats = stats
        self.default_top_k = default_top_k
        self.max_candidates = max_candidates
        self.items = items or {}
        self._user = _Hasher("user", schema.user_buckets)
        self._item = _Hasher("item", schema.item_buckets)
        self._category = _Hasher("category", schema.category_buckets)
        self._brand = _Hasher("brand", schema.brand_buckets)
        self._segment = _Hasher("segment", schema.segment_buckets)
        self._device = _Hasher("device", schema.device_buckets)
        self._query = _Hasher("query", schema.query_buckets)
        self._user_mean = np.asarray(stats.user.mean, dtype=np.float32)
        self._user_std = np.asarray(stats.user.std, dtype=np.float32)
        self._item_mean = np.asarray(stats.item.mean, dtype=np.float32)
        self._item_std = np.asarray(stats.item.std, dtype=np.float32)
        self._item_feature_names = schema.item_dense[1:]
        self._encoded_items = self._encode_item_table()
        # Requests without candidates get theirs from here (`ranking.core` sets it when the
        # package has a retrieval index): ids of the item table, for the request's user.
        self.retriever: Callable[[UserFeatures, Doc, RankingRules], list[str]] | None = None

    @property
    def encoded_items(self) -> EncodedItems | None:
        """The item table encoded, one row per item in its order, and a last row for unknown ids."""
        return self._encoded_items

    def _encode_item_table(self) -> EncodedItems | None:
        """Every item of the table encoded once, as the slow path would encode it sent in full,
        plus a last row for ids the table does not know (no fields: category and brand 0, dense
        features at the training mean). A request of bare ids is then a gather of rows."""
        if not self.items:
            return None
        try:
            encoded = self._encode_objects([{**fields, "id": item_id} for item_id, fields in self.items.items()])
        except RequestError:
            return None  # a table entry the checks refuse: such requests take the slow path
        dense = encoded.dense
        out_of_stock = np.zeros(len(encoded.ids) + 1, dtype=bool)
        out_of_stock[encoded.out_of_stock] = True
        return EncodedItems(
            index={item_id: row for row, item_id in enumerate(encoded.ids)},
            categories=np.array([*encoded.categories, ""], dtype=object),
            brands=np.array([*encoded.brands, ""], dtype=object),
            sellers=None if encoded.sellers is None else np.array([*encoded.sellers, ""], dtype=object),
            out_of_stock=out_of_stock,
            item=torch.cat([encoded.item, torch.zeros(1, dtype=encoded.item.dtype)]),
            category=torch.cat([encoded.category, torch.zeros(1, dtype=encoded.category.dtype)]),
            brand=torch.cat([encoded.brand, torch.zeros(1, dtype=encoded.brand.dtype)]),
            dense=torch.cat([dense, torch.zeros(1, dense.shape[1], dtype=dense.dtype)]),
        )

    # -- dense ---------------------------------------------------------------------------
    @staticmethod
    def _normalize(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
        # Missing values are NaN here and become 0 (the training mean) after normalizing.
        z = (np.log1p(np.clip(raw, 0, None)) - mean) / std
        return torch.from_numpy(np.nan_to_num(z, nan=0.0).astype(np.float32, copy=False))

    # -- user ----------------------------------------------------------------------------
    def encode_user(self, doc: Doc) -> UserFeatures:
        user = doc.get("user")
        if user is None:
            user = {}
        if type(user) is not dict:
            raise RequestError("user", "must be an object")
        context = doc.get("context")
        if context is None:
            context = {}
        if type(context) is not dict:
            raise RequestError("context", "must be an object")
        user_id = _optional_str(user.get("id"), "user.id")
        segment = _optional_str(user.get("segment"), "user.segment")
        device = _optional_str(context.get("device"), "context.device")
        query = _optional_str(context.get("query"), "context.query")
        features = user.get("features") or {}
        if type(features) is not dict:
            raise RequestError("user.features", "must be an object of numbers")
        dense = []
        for name in self.schema.user_dense:
            value = features.get(name)
            if value is None:
                dense.append(math.nan)
            elif _is_number(value):
                dense.append(float(value))
            else:
                raise RequestError(f"user.features.{name}", f"must be {NUMBER}")
        tokens = [self._query(t) for t in (query or "").lower().split()[: self.schema.max_query_tokens]]
        tokens += [0] * (self.schema.max_query_tokens - len(tokens))
        key = f"{user_id}\x1f{segment}\x1f{device}\x1f{query}\x1f{dense}"
        return UserFeatures(
            key=key,
            user=torch.tensor([self._user(user_id) if user_id else 0]),
            segment=torch.tensor([self._segment(segment) if segment else 0]),
            device=torch.tensor([self._device(device) if device else 0]),
            query=torch.tensor([tokens]),
            dense=self._normalize(np.asarray([dense], dtype=np.float32), self._user_mean, self._user_std),
        )

    # -- candidates ----------------------------------------------------------------------
    def encode_candidates(self, candidates: object) -> CandidateFeatures:
        """Column-wise: each field is pulled out and type-checked for all candidates at once
        (C-speed comprehensions and set(map(type, ...))). Only when a check fails does the
        slow path walk the candidates one by one to name the offending field."""
        if candidates is None:
            raise RequestError("candidates", "is required")
        if type(candidates) is not list:
            raise RequestError("candidates", "must be a list of objects")
        if not candidates:
            raise RequestError("candidates", "must not be empty")
        if len(candidates) > self.max_candidates:
            raise RequestError("candidates", f"has {len(candidates)} items; at most {self.max_candidates} are accepted")
        kinds = set(map(type, candidates))
        if kinds == _STR and self._encoded_items is not None:
            return self._from_table(candidates)
        if self.items or not kinds <= _DICT:
            candidates = self._completed(candidates)
        return self._encode_objects(candidates)

    def _from_table(self, ids: list[str]) -> CandidateFeatures:
        """Bare ids: rows gathered from the encoded item table (`_encode_item_table`)."""
        table = self._encoded_items
        assert table is not None
        distinct = set(ids)
        if len(distinct) != len(ids):
            _raise_duplicate(ids)
        if "" in distinct:
            raise RequestError(f"candidates[{ids.index('')}].id", "must not be empty")
        unknown = len(table.index)  # the table's last row
        rows = np.fromiter(map(table.index.get, ids, repeat(unknown)), dtype=np.int64, count=len(ids))
        at = torch.from_numpy(rows)
        item = table.item[at]
        missing = np.flatnonzero(rows == unknown)
        if len(missing):
            item[torch.from_numpy(missing)] = self._item.many([ids[i] for i in missing])
        return CandidateFeatures(
            ids=ids,
            categories=table.categories[rows].tolist(),
            brands=table.brands[rows].tolist(),
            sellers=None if table.sellers is None else table.sellers[rows].tolist(),
            out_of_stock=np.flatnonzero(table.out_of_stock[rows]).tolist(),
            item=item,
            category=table.category[at],
            brand=table.brand[at],
            dense=table.dense[at],
        )

    def _encode_objects(self, candidates: list[Any]) -> CandidateFeatures:
        try:
            # map(dict.get, ...) pulls one field out of every candidate without a Python-level loop.
            ids: list[Any] = list(map(dict.__getitem__, candidates, repeat("id")))
            categories: list[Any] = list(map(dict.get, candidates, repeat("category")))
            brands: list[Any] = list(map(dict.get, candidates, repeat("brand")))
            sellers: list[Any] = list(map(dict.get, candidates, repeat("seller")))
            stock: list[Any] = list(map(dict.get, candidates, repeat("inStock")))
            prices: list[Any] = list(map(dict.get, candidates, repeat("price")))
            features: list[Any] = list(map(dict.get, candidates, repeat("features")))
        except (KeyError, TypeError):
            self._raise_first_error(candidates)
        id_types = set(map(type, ids))
        if id_types != _STR:
            if not id_types <= _STR_OR_INT:
                self._raise_first_error(candidates)
            ids = [str(x) for x in ids]
        distinct = set(ids)
        if len(distinct) != len(ids):
            _raise_duplicate(ids)
        if "" in distinct:
            self._raise_first_error(candidates)
        if not set(map(type, categories)) <= _OPTIONAL_STR or not set(map(type, brands)) <= _OPTIONAL_STR:
            self._raise_first_error(candidates)
        seller_types, stock_types = set(map(type, sellers)), set(map(type, stock))
        if not seller_types <= _OPTIONAL_STR or not stock_types <= _OPTIONAL_BOOL:
            self._raise_first_error(candidates)
        feature_types = set(map(type, features))
        if not feature_types <= _OPTIONAL_DICT or not set(map(type, prices)) <= _OPTIONAL_NUMBER:
            self._raise_first_error(candidates)
        if type(None) in feature_types:
            features = [f or _EMPTY for f in features]
        columns = [prices]
        for name in self._item_feature_names:
            column = list(map(dict.get, features, repeat(name)))
            if not set(map(type, column)) <= _OPTIONAL_NUMBER:
                self._raise_first_error(candidates)
            columns.append(column)
        missing = sum(column.count(None) for column in columns)
        if missing:
            columns = [[math.nan if v is None else v for v in column] for column in columns]
        try:
            raw = np.array(columns, dtype=np.float64).T
        except OverflowError:  # an integer beyond float64 (a lenient JSON parser keeps it)
            self._raise_first_error(candidates)
        finite = np.isfinite(raw)
        in_range = np.abs(raw[finite]) <= FLOAT32_MAX
        if int(finite.size - finite.sum()) != missing or (raw[:, 0] < 0).any() or not in_range.all():
            # NaN, inf or a number beyond float32 sent, or a negative price
            self._raise_first_error(candidates)
        return CandidateFeatures(
            ids=ids,
            categories=categories if None not in categories else [c or "" for c in categories],
            brands=brands if None not in brands else [b or "" for b in brands],
            sellers=None if seller_types == _NONE else [x or "" for x in sellers],
            out_of_stock=[] if stock_types <= _NONE else [i for i, x in enumerate(stock) if x is False],
            item=self._item.many(ids),
            category=self._category.many(categories),
            brand=self._brand.many(brands),
            dense=self._normalize(raw.astype(np.float32), self._item_mean, self._item_std),
        )

    def _completed(self, candidates: list[Any]) -> list[Any]:
        """Bare ids become objects; fields a candidate leaves out come from the item table."""
        items = self.items
        out: list[Any] = []
        for candidate in candidates:
            kind = type(candidate)
            if kind is str or kind is int:
                known = items.get(str(candidate))
                out.append({**known, "id": candidate} if known else {"id": candidate})
            elif kind is dict and items and len(candidate) <= len(MODEL_FIELDS):  # id + all four: taken as sent
                known = items.get(str(candidate.get("id")))
                if known is None:
                    out.append(candidate)
                    continue
                merged = {**known, **candidate}
                sent = candidate.get("features")
                if type(sent) is dict and "features" in known:
                    merged["features"] = {**known["features"], **sent}
                out.append(merged)
            else:
                out.append(candidate)  # the checks below name what is wrong with it
        return out

    def _raise_first_error(self, candidates: list[Any]) -> NoReturn:
        """Walks the candidates to name the first bad field (only for bad requests)."""
        for i, candidate in enumerate(candidates):
            if type(candidate) is not dict:
                raise RequestError(f"candidates[{i}]", "must be an id (string) or an object")
            cid = candidate.get("id")
            if cid is None:
                raise RequestError(f"candidates[{i}].id", "is required")
            if type(cid) not in _STR_OR_INT:
                raise RequestError(f"candidates[{i}].id", "must be a string")
            if cid == "":
                raise RequestError(f"candidates[{i}].id", "must not be empty")
            for name in ("category", "brand", "seller"):
                if type(candidate.get(name)) not in _OPTIONAL_STR:
                    raise RequestError(f"candidates[{i}].{name}", "must be a string")
            if type(candidate.get("inStock")) not in _OPTIONAL_BOOL:
                raise RequestError(f"candidates[{i}].inStock", "must be true or false")
            price = candidate.get("price")
            if price is not None and (not _is_number(price) or price < 0):
                raise RequestError(f"candidates[{i}].price", f"must be {NUMBER}, >= 0")
            features = candidate.get("features")
            if features is not None and type(features) is not dict:
                raise RequestError(f"candidates[{i}].features", "must be an object of numbers")
            for name in self._item_feature_names:
                value = (features or {}).get(name)
                if value is not None and not _is_number(value):
                    raise RequestError(f"candidates[{i}].features.{name}", f"must be {NUMBER}")
        raise RequestError("candidates", "are malformed")

    # -- rules ---------------------------------------------------------------------------
    def encode_rules(self, doc: Doc) -> RankingRules:
        top_k = doc.get("topK", self.default_top_k)
        if type(top_k) is not int or top_k < 1:
            raise RequestError("topK", "must be an integer >= 1")
        exclude = doc.get("exclude") or []
        if type(exclude) is not list or any(type(x) is not str for x in exclude):
            raise RequestError("exclude", "must be a list of candidate ids (strings)")
        caps = {}
        for name in ("maxPerCategory", "maxPerBrand"):
            cap = doc.get(name)
            if cap is not None and (type(cap) is not int or cap < 1):
                raise RequestError(name, "must be an integer >= 1")
            caps[name] = cap
        share = doc.get("maxSellerShare")
        if share is not None and (not _is_number(share) or not 0 < share <= 1):
            raise RequestError(
                "maxSellerShare", "must be a number in (0, 1]: the most of the top-K one seller may hold"
            )
        diversity = doc.get("diversity")
        if diversity is not None and (not _is_number(diversity) or not 0 <= diversity <= 1):
            raise RequestError("diversity", "must be a number from 0 to 1: the weight MMR gives to unlike items")
        return RankingRules(
            top_k=top_k,
            exclude=frozenset(exclude),
            max_per_category=caps["maxPerCategory"],
            max_per_brand=caps["maxPerBrand"],
            max_seller_share=None if share is None else float(share),
            diversity=float(diversity) if diversity else None,
        )

    def encode(self, doc: object) -> EncodedRequest:
        if type(doc) is not dict:
            raise RequestError("instances[]", "each instance must be an object")
        if doc.get("candidates") is None and self.retriever is not None:
            user, rules = self.encode_user(doc), self.encode_rules(doc)
            return EncodedRequest(user=user, candidates=self._from_table(self.retriever(user, doc, rules)), rules=rules)
        return EncodedRequest(
            user=self.encode_user(doc),
            candidates=self.encode_candidates(doc.get("candidates")),
            rules=self.encode_rules(doc),
        )


def raw_dense(docs: Iterable[Doc], schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray]:
    """Raw user and item dense values of training documents, for fitting the statistics."""
    users: list[list[float]] = []
    items: list[list[float]] = []
    for doc in docs:
        features = (doc.get("user") or {}).get("features") or {}
        users.append([float(features.get(n, math.nan)) for n in schema.user_dense])
        for c in doc["candidates"]:
            cf = c.get("features") or {}
            items.append(
                [float(c.get("price", math.nan))] + [float(cf.get(n, math.nan)) for n in schema.item_dense[1:]]
            )
    return np.asarray(users, dtype=np.float32), np.asarray(items, dtype=np.float32)


def fit_stats(docs: Sequence[Doc], schema: FeatureSchema) -> FeatureStats:
    users, items = raw_dense(docs, schema)
    return FeatureStats(user=DenseStats.fit(users), item=DenseStats.fit(items))
