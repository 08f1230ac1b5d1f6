"""
File descriptor limits (L{_limits}) and the listen backlog of endpoint
strings (L{_server.with_backlog}).
"""

from __future__ import annotations

from typing import Any, List, MutableMapping

import pytest

from amp_dispatch.server._limits import FD_RESERVE, UNLIMITED, fit_caps
from amp_dispatch.server._service import with_backlog

Logs = List[MutableMapping[str, Any]]


def test_caps_kept_when_they_fit(logs: Logs) -> None:
    """
    Caps that fit under the limit with the reserve are kept, silently.
    """
    assert fit_caps(1000, 64, 1000 + 64 + FD_RESERVE) == (1000, 64)
    assert logs == []


def test_caps_unlimited() -> None:
    """
    Without a limit, the caps are kept.
    """
    assert fit_caps(10_000, 64, UNLIMITED) == (10_000, 64)


def test_frontend_cap_lowered(logs: Logs) -> None:
    """
    A front-end cap that does not fit is lowered to what does, with a
    warning saying what and why.
    """
    assert fit_caps(10_000, 64, 1024) == (1024 - 64 - FD_RESERVE, 64)
    [warning] = logs
    assert (warning["event"], warning["log_level"], warning["role"]) == (
        "connection cap lowered",
        "warning",
        "frontend",
    )
    assert (warning["max_connections"], warning["wanted"], warning["fd_limit"]) == (
        896,
        10_000,
        1024,
    )


def test_scheduler_first(logs: Logs) -> None:
    """
    A scheduler cap that does not fit is lowered first (warned too), and
    the front end gets at least one.
    """
    assert fit_caps(10_000, 2000, 1024) == (1, 1024 - FD_RESERVE - 1)
    assert [log["role"] for log in logs] == ["scheduler", "frontend"]


def test_caps_at_least_one() -> None:
    """
    However low the limit, one connection of each listener may connect.
    """
    assert fit_caps(10_000, 64, 10) == (1, 1)


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
def test_with_backlog(endpoint: str, expected: str) -> None:
    """
    A backlog is added to the endpoint types that take one, unless the
    string gives its own.
    """
    assert with_backlog(endpoint, 1024) == expected
