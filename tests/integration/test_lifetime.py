"""
Workers' lifetime in the real dispatcher process: a restarted dispatcher
refilled by L{SchedulerClient}, workers removed when their scheduler
connection closes (after the lease grace) or their ttl runs out.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest
import pytest_twisted

from amp_dispatch.client import (
    DispatcherStats,
    DispatcherUnavailable,
    FrontendClient,
    SchedulerClient,
    Worker,
)

from ._process import DispatcherLauncher, DispatcherProcess, poll_until
from .conftest import Cleanup, quick_retry

MakeFrontend = Callable[..., FrontendClient]
MakeScheduler = Callable[..., SchedulerClient]

HOST = "127.0.0.1"


def scheduler_of(reactor: Any, dispatcher: DispatcherProcess, cleanup: Cleanup) -> SchedulerClient:
    """
    A started SchedulerClient of C{dispatcher}; the test stops it (the
    clean-up stops it again, harmlessly, if the test failed first).
    """
    client = SchedulerClient(reactor, dispatcher.scheduler, retry_policy=quick_retry)
    client.start()
    cleanup(client.stop)
    return client


async def stats_of(dispatcher: DispatcherProcess, frontend: FrontendClient) -> DispatcherStats:
    """
    The dispatcher's Stats, checked to be protocol v1.
    """
    stats = await frontend.stats()
    assert stats.protocol == 1, dispatcher.log.tail()
    return stats


@pytest_twisted.ensureDeferred
async def test_restarted_dispatcher_refilled(
    reactor: Any,
    dispatchers: DispatcherLauncher,
    dispatcher: DispatcherProcess,
    scheduler_client: MakeScheduler,
    frontend_client: MakeFrontend,
) -> None:
    """
    A dispatcher stopped (SIGTERM) and started again on the same ports is
    refilled by the SchedulerClient on its own: after reconnecting it sends
    every worker's last update again.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    assert await scheduler.update("a", HOST, 9001, 2)
    assert await scheduler.update("b", HOST, 9002, 1, pool="gpu")
    restarted = await dispatchers.restart(dispatcher)
    assert restarted.ports == dispatcher.ports

    async def stats() -> Optional[DispatcherStats]:
        try:
            return await frontend.stats()
        except DispatcherUnavailable:  # the old connection was lost under the call
            return None

    refilled = await poll_until(
        reactor,
        stats,
        lambda stats: stats is not None and stats.workers == 2,
        what="workers registered again",
    )
    assert refilled is not None
    assert refilled.free_slots == 3
    workers = await scheduler.all_workers()
    assert [(w.worker_id, w.pool, w.capacity, w.port) for w in workers] == [
        ("a", "default", 2, 9001),
        ("b", "gpu", 1, 9002),
    ]
    assert await frontend.next_worker(pool="gpu") == Worker("b", HOST, 9002)
    registered = restarted.log.found({"event": "worker registered"})
    assert sorted(event["worker_id"] for event in registered) == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_scheduler_disconnect_without_grace_removes_workers(
    reactor: Any, dispatchers: DispatcherLauncher, cleanup: Cleanup
) -> None:
    """
    With C{--lease-grace 0}, closing the scheduler connection removes the
    workers it registered at once, logged with reason "lease expired".
    """
    dispatcher = await dispatchers.start(lease_grace=0)
    frontend = FrontendClient(reactor, dispatcher.frontend, retry_policy=quick_retry)
    frontend.start()
    cleanup(frontend.stop)
    scheduler = scheduler_of(reactor, dispatcher, cleanup)
    assert await scheduler.update("a", HOST, 9001, 1)
    assert await scheduler.update("b", HOST, 9002, 1)
    assert (await stats_of(dispatcher, frontend)).workers == 2
    mark = dispatcher.log.mark()
    await scheduler.stop()
    for worker_id in ("a", "b"):
        await dispatcher.log.wait_for(
            {"event": "worker removed", "worker_id": worker_id, "reason": "lease expired"},
            since=mark,
        )
    stats = await stats_of(dispatcher, frontend)
    assert (stats.workers, stats.free_slots) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_scheduler_disconnect_lease_expires(
    reactor: Any, dispatchers: DispatcherLauncher, cleanup: Cleanup
) -> None:
    """
    With a lease grace, the workers of a closed scheduler connection are
    removed once the grace runs out, logged as "worker removed" with reason
    "lease expired".
    """
    dispatcher = await dispatchers.start(lease_grace=0.5)
    scheduler = scheduler_of(reactor, dispatcher, cleanup)
    assert await scheduler.update("a", HOST, 9001, 1)
    mark = dispatcher.log.mark()
    await scheduler.stop()
    started = await dispatcher.log.wait_for({"event": "lease grace started"}, since=mark)
    assert (started["workers"], started["grace"]) == (1, 0.5)
    await dispatcher.log.wait_for(
        {"event": "worker removed", "worker_id": "a", "reason": "lease expired"}, since=mark
    )
    frontend = FrontendClient(reactor, dispatcher.frontend, retry_policy=quick_retry)
    frontend.start()
    cleanup(frontend.stop)
    assert (await stats_of(dispatcher, frontend)).workers == 0


@pytest_twisted.ensureDeferred
async def test_update_on_another_connection_takes_over_lease(
    reactor: Any, dispatcher: DispatcherProcess, cleanup: Cleanup
) -> None:
    """
    A duplicate update (same seq) on another scheduler connection, sent while
    the worker's lease grace runs, is not accepted but makes that connection
    hold the worker: its pending removal is cancelled.
    """
    first = scheduler_of(reactor, dispatcher, cleanup)
    assert await first.update("a", HOST, 9001, 1, seq=7)
    mark = dispatcher.log.mark()
    await first.stop()
    await dispatcher.log.wait_for({"event": "lease grace started"}, since=mark)
    second = scheduler_of(reactor, dispatcher, cleanup)
    (pending,) = (await second.list_workers()).workers
    assert pending.expires_in > 0
    assert await second.update("a", HOST, 9001, 1, seq=7) is False
    (held,) = (await second.list_workers()).workers
    assert held.expires_in == -1
    assert not dispatcher.log.found({"event": "worker removed"})


@pytest_twisted.ensureDeferred
async def test_ttl_removes_worker(
    reactor: Any, dispatcher: DispatcherProcess, scheduler_client: MakeScheduler
) -> None:
    """
    An update with a ttl removes the worker that many seconds after it, while
    its scheduler connection stays open; logged with reason "ttl expired".
    """
    scheduler = scheduler_client()
    mark = dispatcher.log.mark()
    assert await scheduler.update("a", HOST, 9001, 1, ttl=0.3)
    await dispatcher.log.wait_for(
        {"event": "worker removed", "worker_id": "a", "reason": "ttl expired"}, since=mark
    )
    assert (await scheduler.list_workers()).workers == []


@pytest_twisted.ensureDeferred
async def test_sigint_stops_cleanly(
    dispatcher: DispatcherProcess, frontend_client: MakeFrontend
) -> None:
    """
    SIGINT stops a running dispatcher as cleanly as SIGTERM: it logs
    "stopping" and exits with status 0.
    """
    await frontend_client().stats()  # it answers: its reactor runs
    await dispatcher.stop(signal="INT")
    assert not dispatcher.running


@pytest.mark.parametrize("signal", ["INT", "TERM"])
@pytest_twisted.ensureDeferred
async def test_signal_right_after_listening_stops_cleanly(
    dispatchers: DispatcherLauncher, signal: str
) -> None:
    """
    A signal sent as soon as both "listening" lines appeared stops the
    dispatcher cleanly: a supervisor may stop it as soon as it listens.
    """
    dispatcher = await dispatchers.start()
    await dispatcher.stop(signal=signal)
