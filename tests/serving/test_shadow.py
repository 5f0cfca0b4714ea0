"""Mirroring to a canary, with real server processes: the stable server answers as always and
copies requests to the canary in the background; the agreement of the canary's rankings with
its own lands in its /metrics (what the operator's canary analysis reads through Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devcluster.common.ports import free_ports
from devcluster.harness.servers import kserve_server, scraped
from devcluster.harness.testing import wait_for
from recmodel_handlers.tools.client import predict
from recmodel_handlers.tools.samples import make_request

pytestmark = pytest.mark.slow  # tens of seconds each (docs/development.md)

# The canaries here answer every copy: these tests check the comparison, not load shedding.
ROOMY = ["--max-queue=64", "--max-queue-ms=2000"]


@contextmanager
def mirrored(stable: Path, canary_url: str, work: Path, percent: int = 100) -> Iterator[str]:
    with kserve_server(
        stable, "ranker", work / "stable.log", extra_args=[f"--shadow-url={canary_url}", f"--shadow-percent={percent}"]
    ) as url:
        yield url


RESULTS = ("compared", "error", "dropped")


def _send(url: str, count: int, one_copy_at_a_time: bool = False) -> None:
    """`one_copy_at_a_time`: each request's copy is settled before the next request, so a canary
    slower than the stable server (a loaded CI machine) never has MAX_IN_FLIGHT copies waiting,
    which would drop some."""
    for i in range(count):
        answer = predict(url, "ranker", make_request(200, seed=i))
        assert answer["predictions"][0]["items"], answer
        if one_copy_at_a_time:
            wait_for(_settled_at_least(url, i + 1), timeout=30, what=f"copy {i + 1} settled")


def _settled_at_least(url: str, count: int) -> Callable[[], bool]:
    return lambda: sum(scraped(url, "recmodel_shadow_requests_total", result=r) for r in RESULTS) >= count


def _copies(url: str, work: Path) -> str:
    """What became of the copies (compared, error, dropped) and the stable server's warnings."""
    results = {r: scraped(url, "recmodel_shadow_requests_total", result=r) for r in RESULTS}
    log = (work / "stable.log").read_text(errors="replace").splitlines()
    return f"copies: {results}\n" + "\n".join(line for line in log if "mirrored" in line or "WARNING" in line)[-3000:]


def _agreement(url: str) -> tuple[float, float]:
    """(mean agreement, documents compared) from the stable server's histogram."""
    total = scraped(url, "recmodel_shadow_agreement_sum")
    count = scraped(url, "recmodel_shadow_agreement_count")
    return (total / count if count else float("nan"), count)


@pytest.mark.parametrize(
    ("canary_model", "agrees"),
    [("trained_model", True), ("noise_model", False)],
    ids=["same-model-agrees-fully", "model-that-learned-nothing-disagrees"],
)
def test_the_canarys_rankings_are_compared_with_the_stable_ones(
    canary_model: str, agrees: bool, trained_model: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    canary_dir: Path = request.getfixturevalue(canary_model)
    with (
        kserve_server(canary_dir, "ranker", tmp_path / "canary.log", extra_args=ROOMY) as canary,
        mirrored(trained_model, canary, tmp_path) as stable,
    ):
        _send(stable, 20, one_copy_at_a_time=True)
        wait_for(
            lambda: _agreement(stable)[1] >= 20,
            timeout=30,
            what="20 mirrored comparisons",
            explain=lambda: _copies(stable, tmp_path),
        )
        mean, count = _agreement(stable)
        assert count == 20
        if agrees:
            assert mean == pytest.approx(1.0)
        else:
            assert mean < 0.7, mean
        # The canary saw the copies as ordinary requests.
        assert scraped(canary, "recmodel_requests_total", code="200") == 20


def test_a_canary_that_is_down_costs_the_stable_model_nothing(trained_model: Path, tmp_path: Path) -> None:
    (nobody,) = free_ports(1)
    with mirrored(trained_model, f"http://127.0.0.1:{nobody}", tmp_path, percent=50) as stable:
        started = time.monotonic()
        _send(stable, 20)  # every answer is a 200 (asserted in _send)
        assert time.monotonic() - started < 20
        wait_for(
            lambda: scraped(stable, "recmodel_shadow_requests_total", result="error") > 0,
            timeout=30,
            what="failed copies counted",
        )
        assert scraped(stable, "recmodel_shadow_requests_total", result="compared") == 0
