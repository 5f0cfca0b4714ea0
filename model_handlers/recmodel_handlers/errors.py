"""Every error the model servers answer with: its HTTP status, its headers and its one text.

This module owns the HTTP mapping (KServe's `errors.py` is the model), without importing a web
framework, so the ranking core may raise these and the servers only read them: the KServe app
registers one handler for `ServingError` (`serving.app`), the TorchServe handler sets the same
status and body, and the metrics count `status_of(error)`. One body shape: {"error": text}.
"""

from __future__ import annotations

import asyncio
import math
from http import HTTPStatus

import orjson


class ServingError(Exception):
    """An answer other than 200: `status`, `headers()` and `body()` are the whole response."""

    status: int = 500

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> bytes:
        return error_body(str(self))

    @property
    def phrase(self) -> str:
        """The status line's reason phrase (ASCII, whatever the message holds)."""
        return HTTPStatus(self.status).phrase


class RequestError(ServingError, ValueError):
    """A malformed ranking request. `field` names the offending part."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def within(self, origin: str) -> RequestError:
        """The same error, its field prefixed with where the document came from."""
        path = self.field.removeprefix("instances[]")  # features' name for "the document itself"
        if not path:
            return RequestError(origin, self.message)
        return RequestError(f"{origin}{path}" if path.startswith("[") else f"{origin}.{path}", self.message)


class ModelNotFound(ServingError):
    status = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"model not found: {what}")


class MethodNotAllowed(ServingError):
    status = 405

    def __init__(self, method: str, path: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"method: {method} is not allowed on {path} (allowed: {', '.join(allowed)})")
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"allow": ", ".join(self.allowed)}


class BodyTooLarge(ServingError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than the {limit} bytes this server accepts")
        self.limit = limit


class HeadTooLarge(ServingError):
    status = 431

    def __init__(self, limit_bytes: int, limit_count: int | None = None) -> None:
        super().__init__(
            f"headers: more than {limit_count} headers"
            if limit_count is not None
            else f"headers: the request line and headers exceed the {limit_bytes} bytes this server accepts"
        )


class UriTooLong(ServingError):
    status = 414

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"path: longer than the {limit_bytes} bytes this server accepts")


class HeadTimeout(ServingError):
    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(f"headers: not received within {seconds:g} s")


class BodyTimeout(ServingError):
    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(f"body: not received within {seconds:g} s")

    def headers(self) -> dict[str, str]:
        return {"connection": "close"}  # the rest of the body may still come: this connection is done


class UnsupportedEncoding(ServingError):
    status = 415

    def __init__(self, encoding: str) -> None:
        super().__init__(f"header content-encoding: {encoding[:40]!r} is not accepted; send the body as plain JSON")


class Overloaded(ServingError):
    """The work waiting would delay this request past the queue budget."""

    status = 503

    def __init__(self, wait_seconds: float, budget_seconds: float, message: str = "") -> None:
        super().__init__(
            message
            or f"busy: about {wait_seconds * 1000:.0f} ms of work is queued; the budget is {budget_seconds * 1000:.0f} ms"
        )
        self.wait_seconds = wait_seconds

    @property
    def retry_after(self) -> int:
        """Whole seconds, as the Retry-After header counts them."""
        return max(1, math.ceil(self.wait_seconds))

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)}


class TooManyConnections(ServingError):
    """The replica holds `limit` connections already: this one is answered and closed."""

    status = 503

    def __init__(self, limit: int) -> None:
        super().__init__(f"busy: {limit} connections are open, the limit; try again or another replica")

    def headers(self) -> dict[str, str]:
        return {"retry-after": "1"}


class Draining(ServingError):
    status = 503

    def __init__(self, what: str) -> None:
        super().__init__(what)


class DeadlineExceeded(ServingError):
    status = 504

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deadline: not answered within {seconds * 1000:.0f} ms; the work was dropped")


class RouteError(ServingError):
    """What the web framework answers by itself (no such path), in our body shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self._headers = headers or {}

    def headers(self) -> dict[str, str]:
        return self._headers


class InternalError(ServingError):
    status = 500

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"internal error: {type(cause).__name__}")


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def as_serving_error(error: BaseException) -> ServingError:
    if isinstance(error, ServingError):
        return error
    if isinstance(error, TimeoutError | asyncio.CancelledError):
        return DeadlineExceeded(0.0)
    return InternalError(error)


def status_of(error: BaseException) -> int:
    """The HTTP status a failure ends in."""
    return as_serving_error(error).status


# Not answers to a request: a model that cannot be served at all (the process exits).
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
