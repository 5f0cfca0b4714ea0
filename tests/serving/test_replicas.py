"""Replicas sharing one port (`recmodel serve --reuse-port --threads 1`), as two one-CPU pods
of a RecModel share a Service: both real processes listen, and the kernel spreads new
connections over them, so both rank requests."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devcluster.harness.servers import kserve_replicas, listening_pids, metric_total
from recmodel_handlers.tools.samples import make_request

pytestmark = pytest.mark.slow  # tens of seconds each (docs/development.md)


def test_two_replicas_share_a_port_and_both_answer(trained_model: Path, tmp_path: Path) -> None:
    with kserve_replicas(trained_model, "ranker", tmp_path, 2) as url:
        assert len(listening_pids(int(url.rsplit(":", 1)[1]))) == 2
        body = {"instances": [make_request(100, top_k=5)]}
        sent = 60
        for _ in range(sent):  # a new connection each time: the kernel picks a replica per connection
            with httpx.Client(timeout=30) as client:
                assert client.post(f"{url}/v1/models/ranker:predict", json=body).status_code == 200
        # Each scrape lands on one replica; keep scraping until both have shown their counters.
        answered: dict[float, float] = {}
        for _ in range(200):
            with httpx.Client(timeout=10) as client:
                text = client.get(f"{url}/metrics").text
            started = metric_total(text, "process_start_time_seconds")
            answered[started] = metric_total(text, "recmodel_requests_total", code="200")
            if len(answered) == 2:
                break
        else:
            pytest.fail(f"only one replica answered /metrics: {answered}")
    assert sum(answered.values()) >= sent and all(count > 0 for count in answered.values()), answered
