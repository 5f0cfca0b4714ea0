"""Typed errors of the serving core; servers map them to HTTP codes."""

from __future__ import annotations


class RequestError(ValueError):
    """A malformed ranking request (HTTP 400). `field` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelDirError(RuntimeError):
    """A packaged model directory that is missing, incomplete or of another format."""


class QualityGateError(RuntimeError):
    """An optimization lost more ranking quality than the spec allows."""

    def __init__(self, precision: str, drop: float, limit: float, detail: str = "") -> None:
        super().__init__(
            f"precision {precision} refused: NDCG@K drop {drop:.4f} exceeds maxQualityDrop {limit:.4f}{detail}; serving fp32"
        )
        self.precision = precision
        self.drop = drop
        self.limit = limit
