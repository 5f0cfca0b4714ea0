"""Pure pieces of the serving core and the operator, each with behaviour that could break."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from recmodel_handlers.model.features import RankingRules
from recmodel_handlers.ranking.batching import MicroBatcher
from recmodel_handlers.ranking.cache import LruTtlCache
from recmodel_handlers.ranking.quality import auc, ndcg_at_k
from recmodel_handlers.ranking.rules import rank_items
from recmodel_operator.drift import contains
from recmodel_operator.render.context import Owner, RenderContext
from recmodel_operator.spec import RecModelSpec
from recmodel_operator.status import Observation, compute_status, same_status, stamp


def test_rank_items_applies_exclusions_cap_and_top_k() -> None:
    ids = ["a", "b", "c", "d", "e"]
    categories = ["x", "x", "x", "y", "y"]
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    items = rank_items(ids, categories, scores, RankingRules(top_k=3, exclude=frozenset({"a"}), max_per_category=1))
    assert [i["id"] for i in items] == ["b", "d"]
    assert [i["id"] for i in rank_items(ids, categories, scores, RankingRules(top_k=2))] == ["a", "b"]


def test_cache_expires_and_evicts() -> None:
    now = [0.0]
    cache: LruTtlCache[int] = LruTtlCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts the least recently used: b
    assert cache.get("b") is None and cache.get("c") == 3
    now[0] = 11
    assert cache.get("a") is None and cache.hits == 2 and cache.misses == 2
    assert LruTtlCache[int](0, 10).get("x") is None


def test_metrics_on_known_cases() -> None:
    gains = np.array([3.0, 2.0, 0.0])
    assert ndcg_at_k(np.array([0.9, 0.5, 0.1]), gains, 3) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([0.1, 0.5, 0.9]), gains, 3) < 0.7
    assert auc(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 1, 0])) == 1.0
    assert auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5


def test_batcher_groups_concurrent_requests_and_keeps_answers_apart() -> None:
    sizes: list[int] = []
    in_flight = [0]

    def process(items: list[int]) -> list[int]:
        return [i * 10 for i in items]

    async def scenario() -> list[int]:
        batcher = MicroBatcher(
            process, max_batch_size=8, max_latency_ms=50, in_flight=lambda: in_flight[0], on_batch=sizes.append
        )
        in_flight[0] = 20
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        in_flight[0] = 1
        alone = await batcher.submit(99)
        batcher.close()
        return [*results, alone]

    results = asyncio.run(scenario())
    assert results == [i * 10 for i in range(20)] + [990]
    assert sum(sizes) == 21 and max(sizes) <= 8 and len(sizes) < 21
    assert sizes[-1] == 1  # a lone request is not held back


def test_drift_detection_ignores_server_defaults_but_not_changes() -> None:
    desired = {"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "args": ["x"]}]}}}
    live = {
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"containers": [{"name": "a", "args": ["x"], "imagePullPolicy": "Always"}]},
        }
    }
    assert contains(live, desired)
    live["spec"]["template"]["containers"][0]["args"] = ["y"]
    assert not contains(live, desired)
    assert not contains(None, desired)


def _context(**spec: object) -> RenderContext:
    return RenderContext(
        owner=Owner("r", "ns", "uid", generation=4),
        spec=RecModelSpec.model_validate({"model": {"storageUri": "s3://m"}, **spec}),
    )


def test_status_reports_the_schedulers_reason_and_phase() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "r-predictor"},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 0},
    }
    pod = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu.",
                }
            ]
        }
    }
    status = compute_status(
        _context(backend="standalone", autoscaling={"minReplicas": 2, "maxReplicas": 2}),
        Observation(children=[deployment], pods=[pod]),
    )
    schedulable = next(c for c in status["conditions"] if c["type"] == "Schedulable")
    assert status["phase"] == "Pending" and schedulable["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in schedulable["message"]
    deployment["status"]["readyReplicas"] = 2
    ready = compute_status(
        _context(backend="standalone", autoscaling={"minReplicas": 2, "maxReplicas": 2}),
        Observation(children=[deployment]),
    )
    assert (
        ready["phase"] == "Ready"
        and ready["replicas"] == {"desired": 2, "ready": 2}
        and ready["observedGeneration"] == 4
    )


def test_gpu_capacity_check_names_the_missing_product() -> None:
    node = {
        "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-T4"}},
        "status": {"allocatable": {"nvidia.com/gpu": "1"}},
    }
    status = compute_status(
        _context(resources={"gpu": {"count": 1, "product": "NVIDIA-H100"}}), Observation(nodes=[node])
    )
    schedulable = next(c for c in status["conditions"] if c["type"] == "Schedulable")
    assert schedulable["reason"] == "NoMatchingNodes" and "NVIDIA-H100" in schedulable["message"]


def test_transition_times_are_kept_while_status_holds() -> None:
    first = stamp({"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}, None, "t1")
    again = stamp({"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}, first, "t2")
    assert again["conditions"][0]["lastTransitionTime"] == "t1"
    assert same_status(first, {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]})
    changed = stamp({"phase": "Degraded", "conditions": [{"type": "Ready", "status": "False"}]}, first, "t3")
    assert changed["conditions"][0]["lastTransitionTime"] == "t3"
