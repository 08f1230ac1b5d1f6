"""
The queue in Redis and Valkey (L{RedisQueue}) answers as the memory store
does: random runs of updates, answers, removals, listings and counters
against real servers, compared step by step (runs drawn from fixed seeds,
so a failure names the run that shows it).
"""

from __future__ import annotations

import random
from typing import Any, AsyncIterator, List, Optional, Tuple

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock

from amp_dispatch.server._stores import open_store
from amp_dispatch.store._interface import WorkerReport
from amp_dispatch.store._redis import RedisProtocol
from amp_dispatch.store._redis_queue import RedisQueue
from tests._store_servers import StoreServer

IDS = [f"w{i}" for i in range(5)]
POOLS: List[Optional[str]] = [None, "default", "a", "b"]
SEQS: List[Optional[int]] = [None, None, 0, 1, 2, 3, -(2**63), 2**63 - 1, 2**53 + 1]
RUNS = 60
STEPS = 40

Operation = Tuple[str, Any]


def operations(seed: int) -> List[Operation]:
    """
    One run of operations, drawn from C{seed}.
    """
    draw = random.Random(seed)
    run: List[Operation] = []
    for _ in range(draw.randrange(STEPS)):
        kind = draw.choice(["update", "update", "take", "take", "gone", "list", "stats", "flush"])
        if kind == "update":
            report = WorkerReport(
                draw.choice(IDS),
                draw.choice(["h1", "h2", "10.0.0.1", "tab\there"]),
                draw.randint(1, 2),
                draw.randint(0, 3),
                draw.choice(POOLS),
                draw.choice(SEQS),
            )
            run.append((kind, report))
        elif kind == "take":
            run.append((kind, draw.choice(POOLS) or "default"))
        elif kind == "gone":
            run.append((kind, draw.choice(IDS)))
        elif kind == "list":
            run.append(
                (kind, (draw.choice(POOLS), draw.choice([None, "w1", "w3"]), draw.randint(1, 3)))
            )
        else:
            run.append((kind, None))
    return run


@pytest_twisted.async_yield_fixture
async def redis(reactor: Any, store_server: StoreServer) -> AsyncIterator[RedisProtocol]:
    """
    A connection to the store server.
    """
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", store_server.port)
    protocol = await connectProtocol(endpoint, RedisProtocol())
    yield protocol
    assert protocol.transport is not None
    protocol.transport.loseConnection()


async def answers(
    memory: Any, queue: RedisQueue, redis: RedisProtocol, operation: Operation
) -> Tuple[Any, Any]:
    """
    One operation on both stores; their answers.
    """
    kind, argument = operation
    if kind == "update":
        return memory.update(argument), await queue.update(argument)
    if kind == "take":
        return memory.take(argument), await queue.take(argument)
    if kind == "gone":
        return memory.gone(argument), await queue.gone(argument)
    if kind == "list":
        return memory.list_workers(*argument), await queue.list_workers(*argument)
    if kind == "stats":
        return memory.stats(), await queue.stats()
    await redis.execute("SCRIPT", "FLUSH")  # the next script call loads it again
    return None, None


@pytest_twisted.ensureDeferred
async def test_same_answers_as_memory(redis: RedisProtocol) -> None:
    """
    Every answer of the queue in the store is the memory store's.
    """
    for seed in range(RUNS):
        await redis.execute("FLUSHALL")
        memory = open_store(Clock())
        queue = RedisQueue(redis)
        for at, operation in enumerate(operations(seed)):
            expected, actual = await answers(memory, queue, redis, operation)
            if actual != expected:
                pytest.fail(f"run {seed}, step {at}, {operation}: {actual!r} != {expected!r}")


@pytest_twisted.ensureDeferred
async def test_scripts_loaded_once(redis: RedisProtocol) -> None:
    """
    Calls that meet a store without the scripts (flushed, or restarted)
    load each script once, however many were in flight, and are answered.
    """
    await redis.execute("FLUSHALL")
    queue = RedisQueue(redis)
    await queue.update(WorkerReport("w1", "h", 1, 100))
    await redis.execute("SCRIPT", "FLUSH")
    await redis.execute("CONFIG", "RESETSTAT")
    answers = [queue.take("default") for _ in range(50)]
    taken = [await answer for answer in answers]
    assert {worker.worker_id for worker in taken if worker is not None} == {"w1"}
    assert len(taken) == 50
    stats = (await redis.execute("INFO", "commandstats")).decode()
    calls = dict(
        (line.split(":")[0], int(line.split("calls=")[1].split(",")[0]))
        for line in stats.splitlines()
        if line.startswith("cmdstat_")
    )
    assert calls.get("cmdstat_script|load") == 1
    assert "cmdstat_eval" not in calls
