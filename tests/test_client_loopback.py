"""
The clients over real loopback TCP with the real reactor: the dispatcher's
listener factories on free ports, real connects, refusals and reconnects
through L{ClientService}.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest
import pytest_twisted
from amp_dispatch_commands import NoWorkerAvailable
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ServerFactory
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure

from amp_dispatch.client import (
    DispatcherUnavailable,
    FrontendClient,
    SchedulerClient,
    Worker,
)
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport
from amp_dispatch.store._memory import MemoryStore


def fast_retry(attempt: int) -> float:
    """
    Reconnect soon: these tests wait for reconnects, not for time.
    """
    return 0.05


class Listener:
    """
    One listener of a real dispatcher on loopback, whose connections the test
    can drop.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.port: IListeningPort

    async def listen(self, factory: ServerFactory, port: int = 0) -> str:
        self.wrapper = WrappingFactory(factory)
        self.port = await serverFromString(
            self.reactor, f"tcp:{port}:interface=127.0.0.1"
        ).listen(self.wrapper)
        return f"tcp:127.0.0.1:{self.port.getHost().port}"  # type: ignore[attr-defined]

    def drop_connections(self) -> None:
        for protocol in list(self.wrapper.protocols):
            protocol.transport.loseConnection()

    async def stop(self) -> None:
        stopping = self.port.stopListening()
        if stopping is not None:
            await stopping
        self.drop_connections()


def next_loss(client: SchedulerClient) -> Deferred[None]:
    """
    Fires once C{client} has seen its connection lost.
    """
    connection = client._connection
    original = connection.connection_lost
    lost: Deferred[None] = Deferred()

    def noticed(reason: Failure) -> None:
        connection.connection_lost = original  # type: ignore[method-assign]
        original(reason)
        lost.callback(None)

    connection.connection_lost = noticed  # type: ignore[method-assign]
    return lost


async def dispatcher(reactor: Any) -> Tuple[MemoryStore, Listener, Listener, str, str]:
    queue = open_memory_store(reactor)
    served = build_listeners(queue, reactor)
    frontend, scheduler = Listener(reactor), Listener(reactor)
    frontend_endpoint = await frontend.listen(served.frontend.factory)
    scheduler_endpoint = await scheduler.listen(served.scheduler.factory)
    return queue, frontend, scheduler, frontend_endpoint, scheduler_endpoint


@pytest_twisted.ensureDeferred
async def test_register_then_dispatch(reactor: Any) -> None:
    """
    A worker registered with the scheduler client is handed out to the front
    end client.
    """
    queue, frontend, scheduler, frontend_endpoint, scheduler_endpoint = await dispatcher(reactor)
    try:
        async with SchedulerClient(reactor, scheduler_endpoint) as sched, FrontendClient(
            reactor, frontend_endpoint
        ) as front:
            assert await sched.update("w1", "127.0.0.1", 9001, 1) is True
            assert await front.next_worker() == Worker("w1", "127.0.0.1", 9001)
    finally:
        queue.stop()
        await frontend.stop()
        await scheduler.stop()


@pytest_twisted.ensureDeferred
async def test_refused_connection_fails_promptly(reactor: Any) -> None:
    """
    A call to a port nobody listens on (with the client's defaults, and
    far from its timeout) fails at once with L{DispatcherUnavailable}
    naming the refusal.
    """
    closed = Listener(reactor)
    endpoint = await closed.listen(ServerFactory())
    await closed.stop()
    client = FrontendClient(reactor, endpoint, call_timeout=60.0)
    client.start()
    try:
        with pytest.raises(DispatcherUnavailable) as raised:
            await client.next_worker()
    finally:
        await client.stop()
    assert str(raised.value).startswith(f"cannot connect to {endpoint}: ")
    assert "refused" in str(raised.value)


@pytest_twisted.ensureDeferred
async def test_scheduler_refills_restarted_dispatcher(reactor: Any) -> None:
    """
    When the dispatcher restarts empty on the same port, the scheduler client
    reconnects and registers its workers again before its next call.
    """
    queue, frontend, scheduler, _, scheduler_endpoint = await dispatcher(reactor)
    await frontend.stop()
    client = SchedulerClient(reactor, scheduler_endpoint, retry_policy=fast_retry)
    client.start()
    restarted = Listener(reactor)
    fresh = open_memory_store(reactor)
    try:
        await client.update("w1", "127.0.0.1", 9001, 2)
        await client.update("w2", "127.0.0.1", 9002, 3, pool="p")
        lost = next_loss(client)
        await scheduler.stop()
        queue.stop()
        port = int(scheduler_endpoint.rsplit(":", 1)[1])
        await restarted.listen(build_listeners(fresh, reactor).scheduler.factory, port)
        await lost
        workers: List[Any] = await client.all_workers()
    finally:
        await client.stop()
        fresh.stop()
        await restarted.stop()
    assert [(w.worker_id, w.pool, w.capacity) for w in workers] == [
        ("w1", "default", 2),
        ("w2", "p", 3),
    ]


@pytest_twisted.ensureDeferred
async def test_many_next_worker_calls_in_flight(reactor: Any) -> None:
    """
    Hundreds of C{next_worker} calls in flight at once on one connection
    (the fast path, answers many to a read) each get one slot, and the
    calls beyond the free slots get the dispatcher's L{NoWorkerAvailable};
    a C{stats} call among them is answered too.
    """
    queue, frontend, scheduler, frontend_endpoint, _ = await dispatcher(reactor)
    queue.update(WorkerReport("a", "127.0.0.1", 9001, 150))
    queue.update(WorkerReport("b", "127.0.0.1", 9002, 150))
    try:
        async with FrontendClient(reactor, frontend_endpoint) as front:
            await front.next_worker()
            calls = [front.next_worker() for _ in range(200)]
            stats = front.stats()
            calls += [front.next_worker() for _ in range(200)]
            results = await gatherResults(
                [d.addErrback(lambda f: f.trap(NoWorkerAvailable) and None) for d in calls]
            )
            counted = await stats
    finally:
        queue.stop()
        await frontend.stop()
        await scheduler.stop()
    workers = [result for result in results if result is not None]
    # One slot went to the first call: the first 200 in flight all get one.
    assert all(result is not None for result in results[:200])
    assert len(workers) == 299
    assert sorted(w.worker_id for w in workers).count("a") in (149, 150)
    assert {w.port for w in workers} == {9001, 9002}
    assert counted.dispatched == 201
