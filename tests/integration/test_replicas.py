"""
Replicas sharing a store, as real processes: three C{amp-dispatch serve
--store} processes on one real Redis or Valkey server, a scheduler churning
updates, front ends spread over the replicas, one replica killed with
SIGKILL mid-run; and two replicas following a Sentinel failover.

Over-dispatch is counted exactly: each update of a worker gives it a port of
its own, so every answer names the update it was answered under, and no
update may be answered more often than the capacity it gave.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater

from tests._store_servers import SentinelGroup, StoreServer

from ._process import DispatcherLauncher, DispatcherProcess

#: How long the churn runs, and when a replica is killed in it.
RUN_SECONDS = 6.0
KILL_AT = 2.0
WORKERS = 12
FRONT_ENDS = 6
#: The most calls each front end makes (the run is bounded in time too).
MAX_CALLS = 3_000


def sleep(reactor: Any, seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class Ledger:
    """
    What each update gave (worker, port -> capacity) and how often each was
    answered.
    """

    def __init__(self) -> None:
        self.capacity: Dict[Tuple[str, int], int] = {}
        self.answers: Dict[Tuple[str, int], int] = {}
        self.outcomes: Dict[str, int] = {}

    def answered(self, worker_id: str, port: int) -> None:
        key = (worker_id, port)
        self.answers[key] = self.answers.get(key, 0) + 1

    def over_dispatched(self) -> List[str]:
        return [
            f"{worker_id} (update on port {port}): {count} answers, capacity "
            f"{self.capacity.get((worker_id, port))}"
            for (worker_id, port), count in sorted(self.answers.items())
            if count > self.capacity.get((worker_id, port), 0)
        ]

    def outcome(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1


async def churn(reactor: Any, scheduler: Any, ledger: Ledger, until: float) -> None:
    """
    Update random workers, each update with a new port and a capacity of 1
    to 3, until C{until}.
    """
    draw = random.Random(7)
    ports = dict.fromkeys((f"w{i}" for i in range(WORKERS)), 1000)
    while reactor.seconds() < until:
        worker_id = draw.choice(sorted(ports))
        ports[worker_id] += 1
        capacity = draw.randint(1, 3)
        ledger.capacity[(worker_id, ports[worker_id])] = capacity
        try:
            await scheduler.update(worker_id, "10.0.0.1", ports[worker_id], capacity)
        except Exception as e:  # a replica killed under the call: counted, and on
            ledger.outcome(f"update {type(e).__name__}")
        await sleep(reactor, 0.01)


async def front_end(reactor: Any, client: Any, ledger: Ledger, until: float, seed: int) -> None:
    """
    Ask for workers until C{until}: some calls wait, some do not.
    """
    from amp_dispatch.client import NoWorkerAvailable

    draw = random.Random(seed)
    for _ in range(MAX_CALLS):
        if reactor.seconds() >= until:
            return
        try:
            worker = await client.next_worker(timeout=draw.choice([None, 0.2, 1.0]))
        except NoWorkerAvailable:
            ledger.outcome("no worker")
        except Exception as e:  # the killed replica's calls, a store hiccup
            ledger.outcome(type(e).__name__)
            await sleep(reactor, 0.05)
        else:
            ledger.outcome("answered")
            ledger.answered(worker.worker_id, worker.port)


def store_options(url: str) -> List[str]:
    return ["--store", url, "--replica-timeout", "2", "--lease-grace", "30"]


def rotated(endpoints: List[str], start: int) -> List[str]:
    return endpoints[start:] + endpoints[:start]


@pytest_twisted.ensureDeferred
async def test_replica_killed_mid_run(
    reactor: Any, store_server: StoreServer, dispatchers: DispatcherLauncher
) -> None:
    """
    Three replicas, a scheduler churning updates, front ends spread over
    them, one replica SIGKILLed mid-run: no update is answered more often
    than its capacity (counting every replica), no worker is lost, and the
    front ends go on through the others.
    """
    from amp_dispatch.client import FrontendClient, SchedulerClient

    store_server.command("FLUSHALL")
    url = f"redis://127.0.0.1:{store_server.port}/0"
    replicas: List[DispatcherProcess] = [
        await dispatchers.start(more=store_options(url)) for _ in range(3)
    ]
    frontends = [replica.frontend for replica in replicas]
    schedulers = [replica.scheduler for replica in replicas]
    ledger = Ledger()
    scheduler = SchedulerClient(reactor, rotated(schedulers, 1), retry_policy=lambda _: 0.1)
    clients = [
        FrontendClient(reactor, rotated(frontends, i % 3), retry_policy=lambda _: 0.1)
        for i in range(FRONT_ENDS)
    ]
    for client in [scheduler, *clients]:
        client.start()
    try:
        until = reactor.seconds() + RUN_SECONDS
        running = gatherResults(
            [
                Deferred.fromCoroutine(churn(reactor, scheduler, ledger, until)),
                *(
                    Deferred.fromCoroutine(front_end(reactor, client, ledger, until, i))
                    for i, client in enumerate(clients)
                ),
            ]
        )
        await sleep(reactor, KILL_AT)
        replicas[1].kill()
        await running
        assert ledger.over_dispatched() == []
        assert ledger.outcomes.get("answered", 0) > 100, ledger.outcomes
        await sleep(reactor, 0.5)  # the last updates land
        registered = await scheduler.all_workers()
        assert sorted(worker.worker_id for worker in registered) == sorted(
            f"w{i}" for i in range(WORKERS)
        )
        stats = await clients[0].stats()
        assert stats.workers == WORKERS
    finally:
        await gatherResults([client.stop() for client in [scheduler, *clients]])


@pytest_twisted.ensureDeferred
async def test_sentinel_failover(
    reactor: Any, store_server: StoreServer, dispatchers: DispatcherLauncher, tmp_path: Path
) -> None:
    """
    Two replicas on a Sentinel-watched primary: the primary is killed, the
    sentinels promote its replica, the dispatchers follow and hold every
    worker until its next update, and no update is answered more often than
    its capacity.
    """
    from amp_dispatch.client import FrontendClient, NoWorkerAvailable, SchedulerClient

    group = SentinelGroup(store_server.kind, store_server.binary, tmp_path)
    try:
        sentinels = ",".join(f"{host}:{port}" for host, port in group.hosts)
        url = f"redis+sentinel://{sentinels}/{group.name}"
        replicas = [await dispatchers.start(more=store_options(url)) for _ in range(2)]
        for replica in replicas:
            await replica.log.wait_for({"event": "store connected"})
        ledger = Ledger()
        scheduler = SchedulerClient(
            reactor, [replica.scheduler for replica in replicas], retry_policy=lambda _: 0.1
        )
        frontend = FrontendClient(
            reactor, [replica.frontend for replica in replicas], retry_policy=lambda _: 0.1
        )
        scheduler.start()
        frontend.start()

        async def update_all(port: int) -> None:
            for i in range(WORKERS):
                ledger.capacity[(f"w{i}", port)] = 2
                assert await scheduler.update(f"w{i}", "10.0.0.1", port, 2)

        async def take(calls: int) -> None:
            for _ in range(calls):
                worker = await frontend.next_worker()
                ledger.answered(worker.worker_id, worker.port)

        try:
            await update_all(2000)
            await take(WORKERS)
            marks = [replica.log.mark() for replica in replicas]
            group.primary.kill()
            for replica, mark in zip(replicas, marks):
                await replica.log.wait_for({"event": "store connected"}, since=mark, timeout=60)
            held = [replica.log.found({"event": "workers held"}) for replica in replicas]
            assert sum(len(events) for events in held) == 1
            assert (await frontend.stats()).free_slots == 0
            with pytest.raises(NoWorkerAvailable):
                await frontend.next_worker()
            await update_all(2001)
            await take(WORKERS * 2)
            with pytest.raises(NoWorkerAvailable):
                await frontend.next_worker()
            assert ledger.over_dispatched() == []
            assert len(ledger.answers) == WORKERS * 2
        finally:
            await gatherResults([scheduler.stop(), frontend.stop()])
    finally:
        group.stop()
