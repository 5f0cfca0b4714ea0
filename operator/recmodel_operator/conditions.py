"""The words of RecModel.status, typed: phases, condition types and statuses, and the canary's
decisions. One module, used by every writer and reader (`spec.py`'s schema says the same, and
`tests/unit/operator/test_conditions.py` checks they agree); reasons live in `reasons.py`."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class ConditionType(StrEnum):
    READY = "Ready"  # the model answers requests
    RECONCILED = "Reconciled"  # the children match the spec
    SCHEDULABLE = "Schedulable"  # some node can hold a replica


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class CanaryDecision(StrEnum):
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    SHADOW = "Shadow"
    MANUAL = "Manual"


PROBLEM_PHASES = frozenset({Phase.FAILED, Phase.DEGRADED})  # announced with Warning Events
