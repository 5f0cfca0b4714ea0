"""The typed words of RecModel.status are the ones its schema allows, and the ones status writes."""

from __future__ import annotations

import typing
from enum import StrEnum

import pytest

from recmodel_operator import conditions, metrics
from recmodel_operator.spec import CanaryStatus, Condition, RecModelStatus
from recmodel_operator.status import failed_status


def _literal_values(annotation: object) -> set[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    values: set[str] = set()
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            values |= set(typing.get_args(arg))
    return values


@pytest.mark.parametrize(
    ("enum", "annotation"),
    [
        (conditions.Phase, RecModelStatus.model_fields["phase"].annotation),
        (conditions.ConditionStatus, Condition.model_fields["status"].annotation),
        (conditions.CanaryDecision, CanaryStatus.model_fields["decision"].annotation),
    ],
)
def test_the_schema_allows_exactly_the_typed_values(enum: type[StrEnum], annotation: object) -> None:
    assert {str(member) for member in enum} == _literal_values(annotation)


def test_written_status_uses_the_typed_words() -> None:
    status = failed_status(3, "InvalidSpec", "bad")
    assert status["phase"] == conditions.Phase.FAILED
    assert {c["type"] for c in status["conditions"]} <= {str(t) for t in conditions.ConditionType}
    RecModelStatus.model_validate(status)


def test_the_phase_gauge_has_one_series_per_phase() -> None:
    assert set(metrics.PHASES) == {str(phase) for phase in conditions.Phase}
