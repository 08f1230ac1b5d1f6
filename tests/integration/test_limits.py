"""
The real dispatcher process under limits: its file descriptor limit and
connection caps, and what it logs about them.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from typing import Any, List

import pytest_twisted
from amp_dispatch_commands import Stats

from ._process import (
    DispatcherLauncher,
    RawBytes,
    call_remote,
    connect_amp,
    connect_raw,
)


@pytest_twisted.ensureDeferred
async def test_cap_fitted_under_fd_limit(dispatchers: DispatcherLauncher) -> None:
    """
    Under a file descriptor limit of 1,024 (soft and hard: nothing to raise),
    the front-end cap is lowered so that the scheduler's connections and a
    reserve still fit, and both are logged.
    """
    process = await dispatchers.start(fd_limit=1024)
    [limit] = process.log.found({"event": "file descriptor limit"})
    assert (limit["soft"], limit["hard"]) == (1024, 1024)
    [lowered] = process.log.found({"event": "connection cap lowered"})
    assert (lowered["max_connections"], lowered["wanted"]) == (1024 - 64 - 64, 10_000)


@pytest_twisted.ensureDeferred
async def test_soft_limit_raised(dispatchers: DispatcherLauncher) -> None:
    """
    A soft limit under the hard one is raised to it at start.
    """
    process = await dispatchers.start(fd_limit=(256, 1024))
    [limit] = process.log.found({"event": "file descriptor limit"})
    assert (limit["was"], limit["soft"], limit["hard"]) == (256, 1024, 1024)


@pytest_twisted.ensureDeferred
async def test_full_frontend_leaves_scheduler(
    reactor: Any, dispatchers: DispatcherLauncher
) -> None:
    """
    With the front-end listener at its cap, one more front end is closed at
    once (logged at warning), the open ones keep working, and the scheduler
    listener accepts and answers.
    """
    process = await dispatchers.start(more=["--max-frontend-connections", "2"])
    kept: List[RawBytes] = [await connect_raw(reactor, process.frontend_port) for _ in range(2)]
    refused = await connect_raw(reactor, process.frontend_port)
    await refused.when_lost(reactor)
    await process.log.wait_for({"event": "connection refused", "role": "frontend"})
    scheduler = await connect_amp(reactor, process.scheduler_port)
    assert (await call_remote(reactor, scheduler, Stats))["protocol"] == 1
    for raw in kept:
        assert raw.connected
        await raw.close(reactor)
    await scheduler.close(reactor)
