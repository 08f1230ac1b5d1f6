"""
The admin listener of the real process: a Prometheus scrape (the
C{/metrics} text parsed by C{prometheus_client}'s parser) shows every
metric moving as calls are made; C{/healthz} and C{/readyz} answer.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest
import pytest_twisted
from amp_dispatch_commands import (
    InvalidArgument,
    NextWorker,
    NoWorkerAvailable,
    Overloaded,
    WorkerGone,
    WorkerUpdate,
)
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.web.client import Agent

from tests._scrape import Samples, parse_samples
from tests._scrape import sample as value
from tests._store_servers import StoreServer

from ._process import LIVENESS_TIMEOUT, DispatcherLauncher, DispatcherProcess


class _Body(Protocol):
    """
    Collects a response's body.
    """

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self._parts: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(b"".join(self._parts))


async def get(reactor: Any, url: str) -> Tuple[int, str]:
    """
    GET C{url}: the status and the body.
    """
    response = await Agent(reactor).request(b"GET", url.encode("ascii"))
    body = _Body()
    response.deliverBody(body)
    return response.code, (await body.done).decode("utf-8")


async def scrape(reactor: Any, process: DispatcherProcess) -> Samples:
    """
    Scrape C{/metrics} as Prometheus would: every sample by name and labels.
    """
    status, text = await get(reactor, f"{process.admin}/metrics")
    assert status == 200
    return parse_samples(text)


async def until(reactor: Any, process: DispatcherProcess, name: str, **labels: str) -> float:
    """
    Scrape until the sample C{name} with C{labels} is there (at most
    L{LIVENESS_TIMEOUT} seconds): its value.
    """
    for _ in range(int(LIVENESS_TIMEOUT / 0.1)):
        found = value(await scrape(reactor, process), name, **labels)
        if found:
            return found
        # Scrapes read the store at most once a second.
        await deferLater(reactor, 0.1)
    raise AssertionError(f"no {name} {labels} within {LIVENESS_TIMEOUT} s")


@pytest_twisted.async_fixture
async def watched(dispatchers: DispatcherLauncher) -> DispatcherProcess:
    """
    A dispatcher that lets one call wait, holds at most one scheduler
    connection, and removes workers at once when their connection goes.
    """
    return await dispatchers.start(
        lease_grace=0.0, max_waiting=1, more=["--max-scheduler-connections", "1"]
    )


async def call(connection: amp.AMP, command: Any, **arguments: Any) -> Any:
    """
    C{callRemote}, its declared error returned rather than raised.
    """
    try:
        return await connection.callRemote(command, **arguments)
    except Exception as e:
        return e


@pytest_twisted.ensureDeferred
async def test_scrape_moves(reactor: Any, watched: DispatcherProcess, amp_connect: Any) -> None:
    """
    Each metric moves as calls come to each outcome.
    """
    process = watched
    scheduler = await amp_connect(process.scheduler_port)
    frontend = await amp_connect(process.frontend_port)
    update = {"host": "10.0.0.1", "port": 9000}

    assert await call(scheduler, WorkerUpdate, worker_id="w1", capacity=1, seq=2, **update)
    assert not (await call(scheduler, WorkerUpdate, worker_id="w1", capacity=1, seq=1, **update))[
        "accepted"
    ]
    assert not (await call(scheduler, WorkerUpdate, worker_id="w1", capacity=1, seq=2, **update))[
        "accepted"
    ]
    bad = await call(scheduler, _BadUpdate, worker_id="w", host="h", port="x", capacity="1")
    assert isinstance(bad, InvalidArgument)
    assert (await call(frontend, NextWorker))["worker_id"] == "w1"
    assert isinstance(await call(frontend, NextWorker), NoWorkerAvailable)
    assert isinstance(await call(frontend, _BadNext, timeout="x"), InvalidArgument)
    waiting = frontend.callRemote(NextWorker, timeout=0.05)
    assert isinstance(await call(frontend, NextWorker, timeout=5.0), Overloaded)
    with pytest.raises(NoWorkerAvailable):
        await waiting
    assert isinstance(await call(frontend, WorkerGone, worker_id="w1"), Exception)
    assert (await call(scheduler, WorkerGone, worker_id="w1"))["known"]
    await call(scheduler, WorkerUpdate, worker_id="t1", capacity=2, ttl=0.1, pool="gpu", **update)
    await call(scheduler, WorkerUpdate, worker_id="l1", capacity=3, pool="cpu", **update)
    try:
        third = await amp_connect(process.scheduler_port)
    except ConnectError:
        pass  # reset before the connection was reported made
    else:
        await third.when_lost(reactor)

    samples = await scrape(reactor, process)
    commands = "amp_dispatch_commands_total"
    assert value(samples, commands, command="WorkerUpdate", outcome="accepted") == 3
    assert value(samples, commands, command="WorkerUpdate", outcome="stale") == 1
    assert value(samples, commands, command="WorkerUpdate", outcome="duplicate") == 1
    assert value(samples, commands, command="WorkerUpdate", outcome="invalid") == 1
    assert value(samples, commands, command="NextWorker", outcome="answered") == 1
    assert value(samples, commands, command="NextWorker", outcome="no_worker") == 1
    assert value(samples, commands, command="NextWorker", outcome="invalid") == 1
    assert value(samples, commands, command="NextWorker", outcome="overloaded") == 1
    assert value(samples, commands, command="NextWorker", outcome="timed_out") == 1
    assert value(samples, commands, command="WorkerGone", outcome="known") == 1
    rejected = "amp_dispatch_rejected_inputs_total"
    assert value(samples, rejected, listener="scheduler", reason="invalid_argument") == 1
    assert value(samples, rejected, listener="frontend", reason="invalid_argument") == 1
    assert value(samples, rejected, listener="frontend", reason="command_not_served") == 1
    assert value(samples, "amp_dispatch_next_worker_wait_seconds_count") == 1
    assert value(samples, "amp_dispatch_connections", listener="frontend") == 1
    assert value(samples, "amp_dispatch_connections", listener="scheduler") == 1
    assert value(samples, "amp_dispatch_connections_refused_total", listener="scheduler") == 1
    assert value(samples, "amp_dispatch_pool_workers", pool="cpu") == 1
    assert value(samples, "amp_dispatch_pool_free_slots", pool="cpu") == 3
    assert value(samples, "amp_dispatch_workers") == 2
    assert value(samples, "amp_dispatch_free_slots") == 5
    assert value(samples, "amp_dispatch_dispatched_total") == 1
    assert value(samples, "amp_dispatch_store_up") == 1
    assert value(samples, "amp_dispatch_workers_removed_total", reason="gone") == 1
    assert (value(samples, "process_cpu_seconds_total") or 0) > 0

    assert await until(reactor, process, "amp_dispatch_workers_removed_total", reason="ttl_expired")
    await scheduler.close(reactor)
    assert await until(
        reactor, process, "amp_dispatch_workers_removed_total", reason="lease_expired"
    )


@pytest_twisted.ensureDeferred
async def test_waiting_calls_by_pool(
    reactor: Any, dispatcher: DispatcherProcess, amp_connect: Any
) -> None:
    """
    A call waiting in a pool shows in that pool's waiting calls.
    """
    frontend = await amp_connect(dispatcher.frontend_port)
    waiting: Deferred[Any] = frontend.callRemote(NextWorker, pool="gpu", timeout=30.0)
    waiting.addErrback(lambda _: None)
    assert await until(reactor, dispatcher, "amp_dispatch_pool_waiting_calls", pool="gpu") == 1


@pytest_twisted.ensureDeferred
async def test_health(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    C{/healthz} and C{/readyz} answer 200 while the dispatcher serves.
    """
    assert await get(reactor, f"{dispatcher.admin}/healthz") == (200, "ok\n")
    assert await get(reactor, f"{dispatcher.admin}/readyz") == (200, "ready\n")


@pytest_twisted.ensureDeferred
async def test_unknown_path(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    Any other path is not found.
    """
    status, _ = await get(reactor, f"{dispatcher.admin}/nothing")
    assert status == 404


@pytest_twisted.ensureDeferred
async def test_admin_none(dispatchers: DispatcherLauncher) -> None:
    """
    C{--admin none} listens on no admin endpoint.
    """
    process = await dispatchers.start(admin="none")
    assert "admin" not in process.ports


class _BadUpdate(amp.Command):
    """
    A C{WorkerUpdate} whose port and capacity are any text (the schema
    refuses to send a bad one).
    """

    commandName = b"WorkerUpdate"
    arguments = [
        (b"worker_id", amp.Unicode()),
        (b"host", amp.Unicode()),
        (b"port", amp.Unicode()),
        (b"capacity", amp.Unicode()),
    ]
    response = [(b"accepted", amp.Boolean())]
    errors = {InvalidArgument: b"INVALID_ARGUMENT"}


class _BadNext(amp.Command):
    """
    A C{NextWorker} whose timeout is any text.
    """

    commandName = b"NextWorker"
    arguments = [(b"timeout", amp.Unicode())]
    response = [(b"worker_id", amp.Unicode())]
    errors = {InvalidArgument: b"INVALID_ARGUMENT"}


async def until_status(
    reactor: Any, process: DispatcherProcess, path: str, status: int
) -> Tuple[int, str]:
    """
    GET C{path} until it answers C{status} (at most L{LIVENESS_TIMEOUT}
    seconds): the status and body.
    """
    for _ in range(int(LIVENESS_TIMEOUT / 0.1)):
        answer = await get(reactor, f"{process.admin}{path}")
        if answer[0] == status:
            return answer
        await deferLater(reactor, 0.1)
    raise AssertionError(f"{path} did not answer {status} within {LIVENESS_TIMEOUT} s")


@pytest_twisted.ensureDeferred
async def test_ready_follows_the_store(
    reactor: Any, store_server: StoreServer, dispatchers: DispatcherLauncher
) -> None:
    """
    On a shared store, C{/readyz} answers 503 while the store does not
    answer (and the store shows down), 200 again once it does.
    """
    store_server.command("FLUSHALL")
    process = await dispatchers.start(more=["--store", f"redis://127.0.0.1:{store_server.port}/0"])
    await until_status(reactor, process, "/readyz", 200)
    store_server.pause()
    try:
        _, text = await until_status(reactor, process, "/readyz", 503)
        assert text == "not ready: the store does not answer\n"
        assert value(await scrape(reactor, process), "amp_dispatch_store_up") == 0
    finally:
        store_server.resume()
    await until_status(reactor, process, "/readyz", 200)
    assert await until(reactor, process, "amp_dispatch_store_up") == 1
