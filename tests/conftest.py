"""
Shared test set-up: quiet structlog (tests read events with
C{structlog.testing.capture_logs}, which works whatever the level), the
C{fast_path} fixture (fast and generic listeners) and the C{reactor} fixture.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(params=[True, False], ids=["fast", "generic"])
def fast_path(request: pytest.FixtureRequest) -> bool:
    """
    Both implementations of the listeners (L{Dispatcher}'s C{fast_path}): a
    test that takes this fixture runs against each.
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
