"""The canary analysis's PromQL (`recmodel_operator.analysis.queries`), run by a real Prometheus
against a real model server labelled as a canary pod: its error rate and request count see every
answer of the ranking routes, the refusals before the model included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devcluster.addons.prometheus import Prometheus, Target, running_prometheus
from devcluster.harness.servers import kserve_server
from devcluster.harness.testing import wait_for
from recmodel_handlers.tools.samples import make_request
from recmodel_operator.analysis import queries

GOOD, TOO_MANY_HEADERS, DEADLINE_MISSED = 20, 10, 10


@pytest.fixture(scope="module")
def prometheus(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("canary-prometheus")
    with kserve_server(trained_model, "ranker", work / "serve.log") as url:
        labels = {"namespace": "shop", "pod": "ranker-predictor-canary-0"}  # what pod discovery would add
        with running_prometheus([Target(url.removeprefix("http://"), labels)], work) as server:
            wait_for(lambda: server.value("up") == 1, timeout=60, what="Prometheus scraping the server")
            predict = f"{url}/v1/models/ranker:predict"
            body = {"instances": [make_request(1000)]}
            flood = {f"x-{i}": "v" for i in range(150)}
            hurried = {"x-request-timeout-ms": "0.01"}
            total = 'sum(recmodel_http_responses_total{route="predict"})'
            with httpx.Client(timeout=30) as client:

                def send(count: int, headers: dict[str, str], status: int) -> None:
                    for _ in range(count):
                        assert client.post(predict, json=body, headers=headers).status_code == status
                        time.sleep(0.05)

                # One of each first, scraped, so that increase() sees every answer that follows
                # (it cannot count what a series held before its first sample).
                for headers, status in (({}, 200), (flood, 431), (hurried, 504)):
                    send(1, headers, status)
                wait_for(lambda: server.value(total) == 3, timeout=60, what="the first answers scraped")
                send(GOOD, {}, 200)
                send(TOO_MANY_HEADERS, flood, 431)
                send(DEADLINE_MISSED, hurried, 504)
                assert client.get(f"{url}/v2/health/ready").status_code == 200  # not a ranking route
            sent = 3 + GOOD + TOO_MANY_HEADERS + DEADLINE_MISSED
            wait_for(lambda: server.value(total) == sent, timeout=60, what="the last answers scraped")
            yield server


def test_requests_count_every_answer_of_the_ranking_routes(prometheus: Prometheus) -> None:
    requests = prometheus.value(queries("shop", "ranker", 60)["requests"])
    sent = GOOD + TOO_MANY_HEADERS + DEADLINE_MISSED
    # increase() extrapolates towards its window's edges, so it reads somewhat more than was sent
    # (46 for 40 seen); counting only the answers that reached the model would read about 20.
    assert requests is not None and sent <= requests <= 1.5 * sent, requests


def test_the_error_rate_counts_the_deadlines_the_model_missed(prometheus: Prometheus) -> None:
    rate = prometheus.value(queries("shop", "ranker", 60)["error_rate"])
    expected = DEADLINE_MISSED / (GOOD + TOO_MANY_HEADERS + DEADLINE_MISSED)
    assert rate is not None and abs(rate - expected) < 0.05, rate
