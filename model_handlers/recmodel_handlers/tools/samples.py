"""Ranking requests like a shop sends them, from the same generated world as training."""

from __future__ import annotations

from typing import Any

from recmodel_handlers.training.data import make_world, sample_documents

STRIP = ("label", "relevance")


def make_request(candidates: int = 1000, seed: int = 7, top_k: int = 10, **rules: Any) -> dict[str, Any]:
    """One ranking document with `candidates` products (ids repeat only if the catalogue is smaller)."""
    world = make_world(0)
    doc = sample_documents(world, 1, min(candidates, world.n_items), seed=seed)[0]
    items = [{k: v for k, v in c.items() if k not in STRIP} for c in doc["candidates"]]
    while len(items) < candidates:
        items.append({**items[len(items) % len(doc["candidates"])], "id": f"sku-extra-{len(items)}"})
    return {"user": doc["user"], "context": doc["context"], "candidates": items[:candidates], "topK": top_k, **rules}
