"""KServe as a dependency we can trust: `serving.server` extends private hooks of KServe's REST
server, so the distribution pins the minor version they were read in, and this test fails when
another one is installed (or when a hook we override is gone)."""

from __future__ import annotations

import inspect
from importlib.metadata import requires, version

from packaging.requirements import Requirement


def _kserve_requirement() -> Requirement:
    found = [Requirement(r) for r in requires("recmodel-handlers") or [] if Requirement(r).name == "kserve"]
    assert len(found) == 1, found
    return found[0]


def test_the_distribution_pins_one_kserve_minor_version() -> None:
    specifier = _kserve_requirement().specifier
    lower = [s for s in specifier if s.operator == ">="]
    upper = [s for s in specifier if s.operator == "<"]
    assert lower and upper, f"kserve{specifier}: needs a lower and an upper bound"
    low = lower[0].version.split(".")
    high = upper[0].version.split(".")
    assert (int(high[0]), int(high[1])) == (int(low[0]), int(low[1]) + 1), (
        f"kserve{specifier} spans more than one minor"
    )


def test_the_installed_kserve_is_the_pinned_one() -> None:
    installed = version("kserve")
    assert _kserve_requirement().specifier.contains(installed), f"kserve {installed} is not {_kserve_requirement()}"


def test_the_hooks_we_extend_exist_with_the_signatures_we_call() -> None:
    from kserve import Model, ModelServer
    from kserve.protocol.rest.server import RESTServer, _RefreshingServer

    for name in ("_register_endpoints", "_add_exception_handlers", "_add_middlewares", "create_application"):
        assert callable(getattr(RESTServer, name, None)), f"RESTServer.{name}"
    assert callable(getattr(_RefreshingServer, "handle_exit", None))
    assert list(inspect.signature(_RefreshingServer.handle_exit).parameters) == ["self", "sig", "frame"]
    for name in (
        "_register_and_check_atleast_one_model_is_ready",
        "_serve",
        "setup_event_loop",
        "register_signal_handler",
    ):
        assert callable(getattr(ModelServer, name, None)), f"ModelServer.{name}"
    rest = inspect.signature(RESTServer.__init__).parameters
    for parameter in ("app", "data_plane", "model_repository_extension", "http_port"):
        assert parameter in rest, f"RESTServer({parameter}=...)"
    assert list(inspect.signature(Model.__call__).parameters)[:3] == ["self", "body", "headers"]
