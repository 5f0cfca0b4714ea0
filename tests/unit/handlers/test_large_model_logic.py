"""Large-model pieces as pure logic: row-wise int8 tables, row-wise Adagrad on sparse
gradients, precision copies that never copy the tables, memory-mapped loading, and ids-only
candidates gathered from the encoded item table exactly as the slow path encodes them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recmodel_handlers.errors import RequestError
from recmodel_handlers.model.embeddings import (
    Int8RowwiseEmbedding,
    RowWiseAdagrad,
    dequantize_rows,
    quantize_rows,
    release_pages,
)
from recmodel_handlers.model.features import FeatureEncoder, FeatureSchema, build_item_table, fit_stats
from recmodel_handlers.model.network import ModelConfig, RankingModel
from recmodel_handlers.model.package import INT8_TABLES, WEIGHTS, load_package, save_package
from recmodel_handlers.ranking.precision import with_precision
from recmodel_handlers.training.data import make_world, sample_documents
from recmodel_handlers.training.train import encode_set, fit, trained_rows

SCHEMA = FeatureSchema(user_buckets=5_000, item_buckets=50_000)


def test_row_wise_int8_is_within_half_a_step_of_every_value() -> None:
    torch.manual_seed(0)
    weight = torch.randn(3_000, 64) * torch.rand(3_000, 1) * 4
    weight[7] = 0.25  # a constant row: step 0, exact
    table = quantize_rows(weight)
    assert table["codes"].dtype == torch.uint8 and table["scale"].dtype == torch.float16
    restored = dequantize_rows(table, torch.arange(3_000))
    error = (restored - weight).abs()
    step = table["scale"].float().unsqueeze(1)
    assert bool((error <= step / 2 + 1e-3 * weight.abs().amax(dim=1, keepdim=True)).all())
    assert torch.allclose(restored[7], weight[7], atol=1e-3)
    bytes_per_row = 64 + 2 + 2
    assert Int8RowwiseEmbedding(table).nbytes() == 3_000 * bytes_per_row  # 68 of fp32's 256 bytes


def test_row_wise_adagrad_touches_only_the_rows_of_the_batch() -> None:
    torch.manual_seed(0)
    table = torch.nn.Embedding(1_000, 8, sparse=True)
    before = table.weight.detach().clone()
    optimizer = RowWiseAdagrad([table.weight], lr=0.1)
    rows = torch.tensor([3, 3, 17, 999])
    for _ in range(5):
        optimizer.zero_grad()
        loss = (table(rows) - 1.0).pow(2).sum()
        loss.backward()
        optimizer.step()
    changed = (table.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [3, 17, 999]
    accumulator = optimizer.state[table.weight]["sum"]
    assert accumulator.nonzero().flatten().tolist() == [3, 17, 999]
    assert float((table(rows) - 1.0).pow(2).sum()) < float(loss)
    with pytest.raises(ValueError, match="sparse gradients"):
        dense = torch.nn.Parameter(torch.zeros(4, 2))
        dense.grad = torch.ones(4, 2)
        RowWiseAdagrad([dense]).step()


def _docs(n: int, seed: int) -> list[dict]:
    return sample_documents(make_world(0), n, 20, seed=seed)


def test_sparse_training_leaves_rows_no_id_reached_at_their_initial_values() -> None:
    torch.manual_seed(0)
    docs = _docs(60, 1)
    stats = fit_stats(docs, SCHEMA)
    encoder = FeatureEncoder(SCHEMA, stats, max_candidates=1_000)
    data = encode_set(encoder, docs)
    model = RankingModel(SCHEMA, ModelConfig(dim=16, hidden=(32,), sparse=True))
    initial = model.scorer.item.weight.detach().clone()
    fit(model, data, epochs=1, seed=0, batch_size=256, lr=3e-3, log=lambda _: None)
    changed = (model.scorer.item.weight.detach() != initial).any(dim=1)
    trained = torch.unique(data.item)
    assert bool(changed[trained].all())
    assert int(changed.sum()) == len(trained)
    assert trained_rows(model, data)["scorer.item"] == {"rows": 50_000, "trained": len(trained)}


def _package(tmp_path: Path) -> Path:
    docs = _docs(40, 2)
    model = RankingModel(SCHEMA, ModelConfig(dim=16, hidden=(32,), sparse=True)).eval()
    stats = fit_stats(docs, SCHEMA)
    save_package(tmp_path, model=model, stats=stats, validation=docs[:5], metrics={}, items=build_item_table(docs))
    return tmp_path


def test_a_package_is_memory_mapped_and_its_int8_tables_travel_with_it(tmp_path: Path) -> None:
    directory = _package(tmp_path)
    package = load_package(directory)
    assert package.int8_tables is not None and set(package.int8_tables) == {"user_tower.user", "scorer.item"}
    if sys.platform.startswith("linux"):
        maps = Path("/proc/self/maps").read_text()
        assert str(directory / WEIGHTS) in maps and str(directory / INT8_TABLES) in maps
    assert package.model.scorer.item.weight.device.type == "cpu"  # loaded onto real tensors, not meta
    assert package.model.parameter_count() == sum(p.nelement() for p in package.model.parameters())


def test_precision_copies_share_the_tables_and_never_convert_them(tmp_path: Path) -> None:
    package = load_package(_package(tmp_path))
    model = package.model
    table = model.scorer.item.weight
    bf16 = with_precision(model, "bf16")
    assert bf16.scorer.scorer.item._table[0].weight is table  # looked up, cast per row
    assert table.dtype == torch.float32 and model.user_tower.user.weight.dtype == torch.float32
    int8 = with_precision(model, "int8", package.int8_tables)
    assert isinstance(int8.scorer.item, Int8RowwiseEmbedding)
    assert int8.scorer.item.codes.data_ptr() == package.int8_tables["scorer.item"]["codes"].data_ptr()
    assert all(p.data_ptr() != table.data_ptr() for p in int8.parameters())
    rows = torch.tensor([1, 2, 3])
    assert torch.allclose(int8.scorer.item(rows), table[rows], atol=0.05)


def test_bare_ids_are_gathered_from_the_table_exactly_as_full_candidates_encode(tmp_path: Path) -> None:
    docs = _docs(40, 3)
    items = build_item_table(docs)
    encoder = FeatureEncoder(SCHEMA, fit_stats(docs, SCHEMA), items=items)
    known = list(items)[:30]
    ids = [*known[:10], "sku-never-seen", *known[10:]]
    fast = encoder.encode_candidates(ids)
    slow_input = [{**items[i], "id": i} if i in items else {"id": i} for i in ids]
    plain = FeatureEncoder(SCHEMA, fit_stats(docs, SCHEMA))  # no table: the slow path
    slow = plain.encode_candidates(slow_input)
    assert fast.ids == slow.ids and fast.categories == slow.categories
    for name in ("item", "category", "brand", "dense"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    with pytest.raises(RequestError, match="candidates"):
        encoder.encode_candidates([known[0], known[1], known[0]])
    assert np.isfinite(fast.dense.numpy()).all()


def _resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or (line[:1] in "abcdef" and "-" in line.split()[0]):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and smaps are Linux's")
def test_released_table_pages_leave_the_process_and_read_back_the_same(tmp_path: Path) -> None:
    directory = _package(tmp_path)
    package = load_package(directory)
    table = package.model.scorer.item.weight  # 50,000 x 16 fp32: 3.2 MB of the mapped file
    total = float(table.detach().sum())  # reads every page
    assert _resident_kb(directory / WEIGHTS) >= 3_000
    assert release_pages(table)
    assert _resident_kb(directory / WEIGHTS) < 1_000
    assert float(table.detach().sum()) == total  # mapped again from the page cache, unchanged
