"""
File descriptor limits (L{_limits}) and the listen backlog of endpoint
strings (L{_server.with_backlog}).
"""

from __future__ import annotations

from typing import Any, List, MutableMapping

import pytest

from amp_dispatch._limits import FD_RESERVE, UNLIMITED, frontend_cap
from amp_dispatch._server import with_backlog

Logs = List[MutableMapping[str, Any]]


def test_capKeptWhenItFits(logs: Logs) -> None:
    """
    A cap that fits under the limit with the scheduler's and the reserve is
    kept, silently.
    """
    assert frontend_cap(1000, 64, 1000 + 64 + FD_RESERVE) == 1000
    assert logs == []


def test_capUnlimited() -> None:
    """
    Without a limit, the cap is kept.
    """
    assert frontend_cap(10_000, 64, UNLIMITED) == 10_000


def test_capLowered(logs: Logs) -> None:
    """
    A cap that does not fit is lowered to what does, with a warning saying
    what and why.
    """
    assert frontend_cap(10_000, 64, 1024) == 1024 - 64 - FD_RESERVE
    [warning] = logs
    assert (warning["event"], warning["log_level"]) == ("connection cap lowered", "warning")
    assert (warning["max_connections"], warning["wanted"], warning["fd_limit"]) == (
        896,
        10_000,
        1024,
    )


def test_capAtLeastOne() -> None:
    """
    However low the limit, one front end may connect.
    """
    assert frontend_cap(10_000, 64, 100) == 1


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp:8750:interface=127.0.0.1", "tcp:8750:interface=127.0.0.1:backlog=1024"),
        ("tcp6:8750", "tcp6:8750:backlog=1024"),
        ("unix:/run/d.sock:mode=660", "unix:/run/d.sock:mode=660:backlog=1024"),
        ("ssl:8750:privateKey=k.pem", "ssl:8750:privateKey=k.pem:backlog=1024"),
        ("mtls:8751:caCerts=ca.pem", "mtls:8751:caCerts=ca.pem:backlog=1024"),
        ("tcp:8750:backlog=5", "tcp:8750:backlog=5"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_withBacklog(endpoint: str, expected: str) -> None:
    """
    A backlog is added to the endpoint types that take one, unless the
    string gives its own.
    """
    assert with_backlog(endpoint, 1024) == expected
