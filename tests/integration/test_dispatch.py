"""
Workers registered with L{SchedulerClient} come back from L{FrontendClient}
in the right order, from the real dispatcher process.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from typing import Any, Awaitable, Callable, List

import pytest
import pytest_twisted
from amp_dispatch_commands import NextWorker
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone

from amp_dispatch.client import (
    DispatcherStats,
    FrontendClient,
    NoWorkerAvailable,
    SchedulerClient,
    Worker,
)

from ._process import DispatcherProcess, RawAMP, call_remote, poll_until

MakeFrontend = Callable[..., FrontendClient]
MakeScheduler = Callable[..., SchedulerClient]

HOST = "127.0.0.1"
PORTS = {"a": 9001, "b": 9002, "c": 9003}


async def register(scheduler: SchedulerClient, **capacities: int) -> None:
    """
    Register workers C{a}, C{b}... with these capacities, one after the other
    (so they enter the pool in this order).
    """
    for worker_id, capacity in capacities.items():
        assert await scheduler.update(worker_id, HOST, PORTS[worker_id], capacity)


async def answers(frontend: FrontendClient, count: int) -> List[str]:
    """
    The worker ids of C{count} NextWorker answers in a row.
    """
    return [(await frontend.next_worker()).worker_id for _ in range(count)]


@pytest_twisted.ensureDeferred
async def test_registered_worker_answered(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    A worker registered on the scheduler listener is answered on the
    front-end listener with its id, host and port.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    assert await scheduler.update("a", HOST, 9001, 1)
    assert await frontend.next_worker() == Worker("a", HOST, 9001)


@pytest_twisted.ensureDeferred
async def test_most_free_slots_first(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    The worker with the most free slots is answered first, whatever the
    order it was registered in.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    await register(scheduler, a=1, b=3, c=2)
    assert (await frontend.next_worker()).worker_id == "b"


@pytest_twisted.ensureDeferred
async def test_round_robin_among_equals(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    Among workers with as many free slots, never-answered ones go first in
    the order they registered, then the one answered least recently.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    await register(scheduler, a=10, b=10, c=10)
    assert await answers(frontend, 6) == ["a", "b", "c", "a", "b", "c"]


@pytest_twisted.ensureDeferred
async def test_answers_take_slots(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    Every answer takes one of the worker's slots (its assumed load): a
    worker is answered as often as its capacity, and then no more.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    await register(scheduler, a=3, b=1)
    assert await answers(frontend, 4) == ["a", "a", "b", "a"]
    with pytest.raises(NoWorkerAvailable):
        await frontend.next_worker()
    stats = await frontend.stats()
    assert (stats.workers, stats.free_slots, stats.dispatched) == (2, 0, 4)


@pytest_twisted.ensureDeferred
async def test_update_replaces_assumed_load(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    An accepted update sets the worker's free slots to its capacity again,
    forgetting the answers given since the last one.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    await register(scheduler, a=1)
    assert await answers(frontend, 1) == ["a"]
    with pytest.raises(NoWorkerAvailable):
        await frontend.next_worker()
    await register(scheduler, a=2)
    assert await answers(frontend, 2) == ["a", "a"]


@pytest_twisted.ensureDeferred
async def test_full_worker_never_answered(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    A worker registered with capacity 0 (alive but full) is never answered.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    await register(scheduler, a=0, b=1)
    assert await answers(frontend, 1) == ["b"]
    with pytest.raises(NoWorkerAvailable):
        await frontend.next_worker()


@pytest_twisted.ensureDeferred
async def test_pools_are_separate(
    scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    NextWorker answers only workers of the pool it names (C{"default"} when
    it names none).
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    assert await scheduler.update("a", HOST, 9001, 5, pool="gpu")
    with pytest.raises(NoWorkerAvailable):
        await frontend.next_worker()
    assert (await frontend.next_worker(pool="gpu")).worker_id == "a"


def outcome(result: Deferred[Worker]) -> List[object]:
    """
    A list that gets C{result}'s outcome once it has one (C{Deferred.called}
    is true already while a chained Deferred is still waiting).
    """
    seen: List[object] = []

    def record(value: object) -> object:
        seen.append(value)
        return value

    result.addBoth(record)
    return seen


async def waiting_is(reactor: Any, frontend: FrontendClient, count: int) -> DispatcherStats:
    """
    Poll Stats until C{count} NextWorker calls wait at the dispatcher.
    """
    return await poll_until(
        reactor,
        frontend.stats,
        lambda stats: stats.waiting == count,
        what=f"{count} waiting calls",
    )


@pytest_twisted.ensureDeferred
async def test_waiting_call_answered_by_update(
    reactor: Any, scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    A NextWorker call with a timeout waits while no worker has a free slot,
    and is answered as soon as an update frees one.
    """
    scheduler, frontend = scheduler_client(), frontend_client()
    waiting: Deferred[Worker] = frontend.next_worker(timeout=30.0)
    answered = outcome(waiting)
    await waiting_is(reactor, frontend, 1)
    assert answered == []
    assert await scheduler.update("a", HOST, 9001, 1)
    assert await waiting == Worker("a", HOST, 9001)
    stats = await frontend.stats()
    assert (stats.waiting, stats.free_slots, stats.dispatched) == (0, 0, 1)


@pytest_twisted.ensureDeferred
async def test_waiting_calls_first_come_first_served(
    reactor: Any, scheduler_client: MakeScheduler, frontend_client: MakeFrontend
) -> None:
    """
    Waiting calls of a pool are answered in the order they came, one per
    freed slot.
    """
    scheduler, first_client, second_client = (
        scheduler_client(),
        frontend_client(),
        frontend_client(),
    )
    first: Deferred[Worker] = first_client.next_worker(timeout=30.0)
    await waiting_is(reactor, first_client, 1)
    second: Deferred[Worker] = second_client.next_worker(timeout=30.0)
    second_answered = outcome(second)
    await waiting_is(reactor, first_client, 2)
    assert await scheduler.update("a", HOST, 9001, 1)
    assert (await first).worker_id == "a"
    await waiting_is(reactor, first_client, 1)
    assert second_answered == []
    assert await scheduler.update("b", HOST, 9002, 1)
    assert (await second).worker_id == "b"


@pytest_twisted.ensureDeferred
async def test_waiting_call_times_out(frontend_client: MakeFrontend) -> None:
    """
    A waiting call that no update answers fails with NO_WORKER_AVAILABLE when
    its timeout runs out, and leaves the line.
    """
    frontend = frontend_client()
    with pytest.raises(NoWorkerAvailable):
        await frontend.next_worker(timeout=0.2)
    assert (await frontend.stats()).waiting == 0


@pytest_twisted.ensureDeferred
async def test_waiting_call_of_closed_connection_leaves_line(
    reactor: Any,
    dispatcher: DispatcherProcess,
    amp_connect: Callable[[int], Awaitable[RawAMP]],
    scheduler_client: MakeScheduler,
    frontend_client: MakeFrontend,
) -> None:
    """
    A waiting NextWorker call whose connection closes leaves the line without
    taking a slot: the next update's slot goes to the next caller.
    """
    connection = await amp_connect(dispatcher.frontend_port)
    abandoned = call_remote(reactor, connection, NextWorker, timeout=30.0)
    abandoned.addErrback(lambda failure: failure.trap(ConnectionDone))
    frontend = frontend_client()
    await waiting_is(reactor, frontend, 1)
    await connection.close(reactor)
    await abandoned
    await waiting_is(reactor, frontend, 0)
    assert await scheduler_client().update("a", HOST, 9001, 1)
    stats = await frontend.stats()
    assert (stats.free_slots, stats.dispatched) == (1, 0)
    assert (await frontend.next_worker()).worker_id == "a"
