"""
The shared store (L{RedisStore}) answers as the memory store does: random
runs of updates, answers, removals, listings and counters against real
servers, compared step by step (runs drawn from fixed seeds,
so a failure names the run that shows it).
"""

from __future__ import annotations

import random
from typing import Any, Iterator, List, Optional, Tuple

import pytest
from twisted.internet.task import Clock

from amp_dispatch.server._config import DEFAULT_CONFIG
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport
from tests._redis_harness import RedisHarness, ValkeyHarness

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


@pytest.fixture(params=[RedisHarness, ValkeyHarness], ids=["redis", "valkey"])
def harness(request: pytest.FixtureRequest) -> Iterator[RedisHarness]:
    """
    A shared store alone on a real server of each kind.
    """
    made: RedisHarness = request.param(DEFAULT_CONFIG)
    yield made
    made.close()


def answers(memory: Any, harness: RedisHarness, operation: Operation) -> Tuple[Any, Any]:
    """
    One operation on both stores; their answers.
    """
    kind, argument = operation
    store = harness.store
    if kind == "update":
        return memory.update(argument), harness.resolve(store.update(argument))
    if kind == "take":
        return memory.take(argument), harness.resolve(store.take(argument))
    if kind == "gone":
        return memory.gone(argument), harness.resolve(store.gone(argument))
    if kind == "list":
        return memory.list_workers(*argument), harness.resolve(store.list_workers(*argument))
    if kind == "stats":
        return memory.stats(), harness.resolve(store.stats())
    harness.server.command("SCRIPT", "FLUSH")  # the next script call loads it again
    return None, None


def test_same_answers_as_memory(harness: RedisHarness) -> None:
    """
    Every answer of the shared store is the memory store's.
    """
    for seed in range(RUNS):
        harness.server.command("FLUSHALL")
        memory = open_memory_store(Clock())
        fresh = RedisHarness.replica(harness, f"run{seed}")
        harness.store = fresh
        for at, operation in enumerate(operations(seed)):
            expected, actual = answers(memory, harness, operation)
            if actual != expected:
                pytest.fail(f"run {seed}, step {at}, {operation}: {actual!r} != {expected!r}")


def test_scripts_loaded_once(harness: RedisHarness) -> None:
    """
    Calls that meet a store without the scripts (flushed, or restarted)
    load each script once, however many were in flight, and are answered.
    """
    store = harness.store
    harness.resolve(store.update(WorkerReport("w1", "h", 1, 100)))
    harness.server.command("SCRIPT", "FLUSH")
    harness.server.command("CONFIG", "RESETSTAT")
    answers = [store.take("default") for _ in range(50)]
    taken = [harness.resolve(answer) for answer in answers]
    assert {worker.worker_id for worker in taken if worker is not None} == {"w1"}
    assert len(taken) == 50
    stats = harness.server.command("INFO", "commandstats").decode()
    calls = dict(
        (line.split(":")[0], int(line.split("calls=")[1].split(",")[0]))
        for line in stats.splitlines()
        if line.startswith("cmdstat_")
    )
    # Redis 7 and Valkey count SCRIPT LOAD apart; Redis 6.2 as SCRIPT.
    assert calls.get("cmdstat_script|load", calls.get("cmdstat_script")) == 1
    assert "cmdstat_eval" not in calls
