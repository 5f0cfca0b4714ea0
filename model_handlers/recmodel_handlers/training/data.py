"""Training data: a generator with planted structure (so the true ranking is known) and a
loader for interaction logs in CSV. Both produce ranking documents in the request format,
with per-candidate `label` (clicked) and, when known, `relevance` (true click probability).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Doc = dict[str, Any]

CATEGORY_NAMES = (
    "running shoes",
    "sneakers",
    "boots",
    "t-shirts",
    "jackets",
    "jeans",
    "dresses",
    "watches",
    "backpacks",
    "headphones",
    "phones",
    "laptops",
    "cameras",
    "toys",
    "books",
    "kitchen",
    "bedding",
    "lamps",
    "garden",
    "skincare",
    "perfume",
    "vitamins",
    "coffee",
    "pet food",
)
SEGMENTS = ("new", "returning", "vip")
DEVICES = ("mobile", "desktop", "app")


@dataclass(frozen=True)
class World:
    """Users and items with hidden preferences; `utility` is the ground truth."""

    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray
    item_popularity: np.ndarray  # Zipf weights, sum 1
    item_rating: np.ndarray
    item_discount: np.ndarray
    brand_quality: np.ndarray
    user_affinity: np.ndarray  # [users, categories]
    user_price_sensitivity: np.ndarray
    user_segment: np.ndarray
    user_activity: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_segment)

    @property
    def n_items(self) -> int:
        return len(self.item_category)

    def utility(self, user: int, items: np.ndarray, query_category: int | None) -> np.ndarray:
        """Logit of a click: category affinity, popularity, price sensitivity, brand, query match."""
        category = self.item_category[items]
        logit = (
            3.0 * self.user_affinity[user, category]
            + 0.35 * np.log(self.item_popularity[items] * self.n_items)
            - self.user_price_sensitivity[user] * (np.log(self.item_price[items]) - 3.5)
            + self.brand_quality[self.item_brand[items]]
            + 0.8 * self.item_discount[items]
            - 2.5
        )
        if query_category is not None:
            logit = logit + 1.5 * (category == query_category)
        return np.asarray(logit)


def make_world(seed: int = 0, n_users: int = 600, n_items: int = 3000, n_brands: int = 80) -> World:
    rng = np.random.default_rng(seed)
    n_categories = len(CATEGORY_NAMES)
    ranks = rng.permutation(n_items) + 1
    popularity = 1.0 / ranks**1.1
    category = rng.integers(0, n_categories, n_items)
    base_price = np.exp(rng.normal(3.5, 0.6, n_categories))
    price = np.round(base_price[category] * np.exp(rng.normal(0, 0.5, n_items)), 2)
    affinity = rng.dirichlet(np.full(n_categories, 0.3), n_users)
    return World(
        item_category=category,
        item_brand=rng.integers(0, n_brands, n_items),
        item_price=price,
        item_popularity=popularity / popularity.sum(),
        item_rating=np.round(np.clip(rng.normal(4.0, 0.6, n_items), 1, 5), 1),
        item_discount=np.round(rng.choice([0.0, 0.0, 0.1, 0.2, 0.3], n_items), 2),
        brand_quality=rng.normal(0, 0.4, n_brands),
        user_affinity=affinity * 3.0,
        user_price_sensitivity=rng.gamma(2.0, 0.3, n_users),
        user_segment=rng.integers(0, len(SEGMENTS), n_users),
        user_activity=rng.gamma(1.5, 4.0, n_users),
    )


def _candidate(world: World, item: int) -> Doc:
    return {
        "id": f"sku-{item}",
        "category": CATEGORY_NAMES[world.item_category[item]],
        "brand": f"brand-{world.item_brand[item]}",
        "price": float(world.item_price[item]),
        "features": {
            "popularity": float(world.item_popularity[item] * world.n_items),
            "rating": float(world.item_rating[item]),
            "discount": float(world.item_discount[item]),
        },
    }


def catalog_table(world: World, start: int = 0, stop: int | None = None) -> dict[str, Doc]:
    """The world's items (all, or rows start..stop) as an item table (id -> fields): the catalog
    retrieval searches."""
    table = {}
    for item in range(start, world.n_items if stop is None else min(stop, world.n_items)):
        fields = _candidate(world, item)
        table[fields.pop("id")] = fields
    return table


def sample_documents(world: World, n_docs: int, candidates_per_doc: int, seed: int) -> list[Doc]:
    """Impressions: a user, a context and candidates (half popular, half random), with labels."""
    rng = np.random.default_rng(seed)
    docs: list[Doc] = []
    for _ in range(n_docs):
        user = int(rng.integers(0, world.n_users))
        half = candidates_per_doc // 2
        popular = rng.choice(world.n_items, half, replace=False, p=world.item_popularity)
        rest = rng.choice(world.n_items, candidates_per_doc - half, replace=False)
        items = np.unique(np.concatenate([popular, rest]))
        query_category: int | None = None
        if rng.random() < 0.5:
            query_category = int(
                rng.choice(len(CATEGORY_NAMES), p=world.user_affinity[user] / world.user_affinity[user].sum())
            )
        probability = 1.0 / (1.0 + np.exp(-world.utility(user, items, query_category)))
        clicks = rng.random(len(items)) < probability
        activity = world.user_activity[user]
        docs.append(
            {
                "user": {
                    "id": f"u-{user}",
                    "segment": SEGMENTS[world.user_segment[user]],
                    "features": {
                        "clicks_7d": float(rng.poisson(activity)),
                        "purchases_30d": float(rng.poisson(activity / 5)),
                        "sessions_7d": float(rng.poisson(activity / 2)),
                    },
                },
                "context": {
                    "query": CATEGORY_NAMES[query_category] if query_category is not None else "",
                    "device": DEVICES[int(rng.integers(0, len(DEVICES)))],
                },
                "candidates": [
                    {**_candidate(world, int(item)), "label": bool(click), "relevance": float(p)}
                    for item, click, p in zip(items, clicks, probability, strict=True)
                ],
            }
        )
    return docs


def shuffle_labels(docs: list[Doc], seed: int = 0) -> list[Doc]:
    """The same documents with their labels permuted across all candidates: a control whose
    model learns nothing (its rankings disagree with a real model's)."""
    labels = [c["label"] for d in docs for c in d["candidates"]]
    np.random.default_rng(seed).shuffle(labels)
    it = iter(labels)
    return [{**d, "candidates": [{**c, "label": next(it)} for c in d["candidates"]]} for d in docs]


def load_csv(path: Path, max_candidates: int = 200) -> list[Doc]:
    """Interaction logs: one row per event (user, item, event, timestamp, item attributes).

    Events of one user within the same hour form one impression; click or purchase is a
    positive label, view a negative one. Optional columns: category, brand, price, segment,
    device, query, and item features popularity, rating, discount.
    """
    sessions: dict[tuple[str, int], dict[str, Doc]] = defaultdict(dict)
    context: dict[tuple[str, int], Doc] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"user", "item", "event", "timestamp"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                hour = int(float(row["timestamp"]) // 3600)
            except ValueError as error:
                raise ValueError(f"{path}:{line}: timestamp must be seconds since the epoch") from error
            key = (row["user"], hour)
            context.setdefault(
                key,
                {
                    "segment": row.get("segment") or None,
                    "device": row.get("device") or None,
                    "query": row.get("query") or "",
                },
            )
            candidate = sessions[key].setdefault(row["item"], {"id": row["item"], "label": False})
            for name in ("category", "brand"):
                if row.get(name):
                    candidate[name] = row[name]
            if row.get("price"):
                candidate["price"] = float(row["price"])
            features = {n: float(row[n]) for n in ("popularity", "rating", "discount") if row.get(n)}
            if features:
                candidate["features"] = features
            if row["event"] in ("click", "purchase", "add_to_cart"):
                candidate["label"] = True
    docs = []
    for (user, _hour), candidates in sessions.items():
        ctx = context[(user, _hour)]
        docs.append(
            {
                "user": {"id": user, "segment": ctx["segment"]},
                "context": {"query": ctx["query"], "device": ctx["device"]},
                "candidates": list(candidates.values())[:max_candidates],
            }
        )
    return docs


def write_csv(docs: list[Doc], path: Path, start_time: int = 1_780_000_000) -> None:
    """Writes documents as an interaction log (the format `load_csv` reads)."""
    columns = [
        "user",
        "item",
        "event",
        "timestamp",
        "category",
        "brand",
        "price",
        "segment",
        "device",
        "query",
        "popularity",
        "rating",
        "discount",
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for index, doc in enumerate(docs):
            for candidate in doc["candidates"]:
                features = candidate.get("features", {})
                writer.writerow(
                    {
                        "user": doc["user"]["id"],
                        "item": candidate["id"],
                        "event": "click" if candidate.get("label") else "view",
                        "timestamp": start_time + index * 7200,
                        "category": candidate.get("category", ""),
                        "brand": candidate.get("brand", ""),
                        "price": candidate.get("price", ""),
                        "segment": doc["user"].get("segment") or "",
                        "device": doc["context"].get("device") or "",
                        "query": doc["context"].get("query") or "",
                        "popularity": features.get("popularity", ""),
                        "rating": features.get("rating", ""),
                        "discount": features.get("discount", ""),
                    }
                )
