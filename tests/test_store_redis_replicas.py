"""
Replicas sharing one store (L{RedisStore}s on a real Redis or Valkey
server): waiting calls across replicas, answers that meet a timeout or a
cancel, replicas that die or pause (buried, fenced), the hold rule after a
primary change, leaving, and a random run of all of it that counts every
answer per worker between its accepted updates.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Dict, Iterator, List, MutableMapping, Optional

import pytest
from amp_dispatch_commands import NoWorkerAvailable, StoreUnavailable
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.python.failure import Failure

from amp_dispatch._records import Worker
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.store._interface import UpdateOutcome, WorkerReport
from amp_dispatch.store._redis_store import RedisStore
from tests._deferreds import assert_no_result, failure_of, result_of
from tests._redis_harness import RedisHarness, ValkeyHarness

CONFIG = DispatcherConfig(lease_grace=30.0)


@pytest.fixture(params=[RedisHarness, ValkeyHarness], ids=["redis", "valkey"])
def harness(request: pytest.FixtureRequest) -> Iterator[RedisHarness]:
    made: RedisHarness = request.param(CONFIG)
    yield made
    made.close()


def report(worker_id: str = "w1", capacity: int = 1, seq: Optional[int] = None) -> WorkerReport:
    return WorkerReport(worker_id, f"host-{worker_id}", 7000, capacity, seq=seq)


def free(harness: RedisHarness, worker_id: str) -> int:
    rows = harness.resolve(harness.redis_store.list_workers(None, None, 1000)).workers
    free: Dict[str, int] = {row.worker_id: row.free for row in rows}
    return free[worker_id]


def waits(harness: RedisHarness, store: RedisStore, timeout: float = 10.0) -> Deferred[Worker]:
    answer = store.next_worker(None, timeout)
    harness.settle()
    assert_no_result(answer)
    return answer


def test_waiter_of_other_replica_answered(harness: RedisHarness) -> None:
    """
    An update through one replica answers a call waiting on another.
    """
    r2 = harness.replica("r2")
    waiting = waits(harness, r2)
    harness.resolve(harness.redis_store.update(report()))
    assert result_of(waiting).worker_id == "w1"
    assert harness.resolve(r2.stats()).waiting == 0


def test_first_come_first_served_across_replicas(harness: RedisHarness) -> None:
    """
    Calls waiting on different replicas are answered in the order they
    came to the store.
    """
    r2 = harness.replica("r2")
    first = waits(harness, r2)
    second = waits(harness, harness.redis_store)
    harness.resolve(harness.redis_store.update(report("w1")))
    assert result_of(first).worker_id == "w1"
    assert_no_result(second)
    harness.resolve(r2.update(report("w2")))
    assert result_of(second).worker_id == "w2"


def test_timed_out_call_collects_answer_that_came(harness: RedisHarness) -> None:
    """
    A call whose answer came to the store, but whose wake-up had not reached
    its replica at its timeout, is answered with it: no slot is lost.
    """
    r2 = harness.replica("r2")
    waiting = waits(harness, r2, timeout=5.0)
    harness.silence(r2)
    harness.resolve(harness.redis_store.update(report()))
    harness.clock.advance(5.0)
    harness.unsilence(r2)
    harness.pump()
    assert result_of(waiting).worker_id == "w1"
    assert free(harness, "w1") == 0


def test_cancelled_call_gives_answer_back(harness: RedisHarness) -> None:
    """
    A call cancelled after its answer came to the store gives the slot back
    to the worker.
    """
    r2 = harness.replica("r2")
    waiting = waits(harness, r2)
    harness.silence(r2)
    harness.resolve(harness.redis_store.update(report()))
    assert free(harness, "w1") == 0
    waiting.cancel()
    failure_of(waiting, CancelledError)
    harness.unsilence(r2)
    harness.pump()
    assert free(harness, "w1") == 1
    assert harness.resolve(harness.redis_store.next_worker()).worker_id == "w1"


def test_call_cancelled_before_queued_withdrawn(harness: RedisHarness) -> None:
    """
    A call cancelled before the store said it was in line leaves the line
    once it is, and takes no slot.
    """
    waiting = harness.redis_store.next_worker(None, 10.0)
    waiting.cancel()
    failure_of(waiting, CancelledError)
    harness.settle()
    assert harness.resolve(harness.redis_store.stats()).waiting == 0
    harness.resolve(harness.redis_store.update(report()))
    assert free(harness, "w1") == 1


def test_buried_replica_slots_go_back(harness: RedisHarness) -> None:
    """
    Slots handed to calls of a replica that died go back to the worker once
    another replica buries it; its calls leave the line.
    """
    r2 = harness.replica("r2")
    waits(harness, r2)
    waits(harness, r2)
    harness.silence(r2)
    harness.resolve(harness.redis_store.update(report()))
    assert free(harness, "w1") == 0
    assert harness.resolve(harness.redis_store.stats()).waiting == 1
    harness.advance(r2.replica_timeout + 1)
    assert free(harness, "w1") == 1
    assert harness.resolve(harness.redis_store.stats()).waiting == 0


def test_buried_replica_workers_get_lease_grace(harness: RedisHarness) -> None:
    """
    The workers a dead replica's scheduler connections held get the lease
    grace when it is buried, then go.
    """
    r2 = harness.replica("r2")
    harness.resolve(r2.update(report(), owner=7))
    harness.silence(r2)
    harness.advance(r2.replica_timeout + 1)
    [row] = harness.resolve(harness.redis_store.list_workers(None, None, 10)).workers
    assert CONFIG.lease_grace - 2 <= row.expires_in <= CONFIG.lease_grace
    harness.advance(CONFIG.lease_grace)
    assert harness.resolve(harness.redis_store.list_workers(None, None, 10)).workers == []


def test_update_from_other_replica_ends_lease(harness: RedisHarness) -> None:
    """
    A scheduler that reconnects to another replica takes its workers over:
    their lease grace ends.
    """
    r2 = harness.replica("r2")
    harness.resolve(r2.update(report(seq=1), owner=7))
    harness.silence(r2)
    harness.advance(r2.replica_timeout + 1)
    outcome = harness.resolve(harness.redis_store.update(report(seq=1), owner=3))
    assert outcome is UpdateOutcome.DUPLICATE
    harness.advance(CONFIG.lease_grace + 1)
    rows = harness.resolve(harness.redis_store.list_workers(None, None, 10)).workers
    assert [(row.worker_id, row.expires_in) for row in rows] == [("w1", -1.0)]


def test_fenced_replica_refused_then_joins_again(
    harness: RedisHarness, logs: List[MutableMapping[str, Any]]
) -> None:
    """
    A replica buried while it was paused refuses scheduler writes and fails
    its waiting calls, then joins again as a new incarnation.
    """
    r2 = harness.replica("r2")
    waiting = waits(harness, r2)
    harness.silence(r2)
    harness.advance(r2.replica_timeout + 1)
    harness.unsilence(r2)
    refused = r2.update(report(), owner=1)
    harness.pump()
    failure_of(refused, StoreUnavailable)
    harness.resolve(r2.beat())
    failure_of(waiting, StoreUnavailable)
    assert r2.replica == "r2.1"
    assert harness.resolve(r2.update(report(), owner=1)) is UpdateOutcome.ACCEPTED
    assert [log["replica"] for log in logs if log["event"] == "replica fenced"] == ["r2.0"]


def test_hold_rule_after_primary_change(harness: RedisHarness) -> None:
    """
    When the store's primary changes, every worker is held at no free slot
    until its next accepted update: a duplicate (a scheduler's resync) does
    not refill it, since its capacity was already partly answered.
    """
    store = harness.redis_store
    harness.resolve(store.update(report("w1", 3, seq=1)))
    harness.resolve(store.update(report("w2", 2)))
    harness.resolve(store.next_worker())
    harness.resolve(store.connected("primary-2"))
    assert harness.resolve(store.stats()).free_slots == 0
    assert free(harness, "w1") == 0
    with pytest.raises(NoWorkerAvailable):
        harness.resolve(store.next_worker())
    assert harness.resolve(store.update(report("w1", 3, seq=1))) is UpdateOutcome.DUPLICATE
    assert free(harness, "w1") == 0
    harness.resolve(store.update(report("w1", 3, seq=2)))
    assert free(harness, "w1") == 3
    assert harness.resolve(store.stats()).free_slots == 3


def test_hold_applied_once(harness: RedisHarness, logs: List[MutableMapping[str, Any]]) -> None:
    """
    The first replica to reach the new primary holds the workers; those
    that come after do not hold them again (updates since stand).
    """
    r2 = harness.replica("r2")
    harness.resolve(harness.redis_store.connected("primary-2"))
    harness.resolve(r2.update(report("w1", 2, seq=1)))
    harness.resolve(r2.connected("primary-2"))
    assert free(harness, "w1") == 2
    assert len([log for log in logs if log["event"] == "workers held"]) == 1


def test_same_primary_no_hold(harness: RedisHarness) -> None:
    """
    Reconnecting to the same primary holds nothing.
    """
    store = harness.redis_store
    harness.resolve(store.update(report("w1", 3)))
    harness.resolve(store.connected("primary-1"))
    assert free(harness, "w1") == 3


def test_stop_leaves_store(harness: RedisHarness) -> None:
    """
    A replica that stops fails its waiting calls, takes them out of line,
    and its scheduler connections' workers get the lease grace.
    """
    r2 = harness.replica("r2")
    harness.resolve(r2.update(report("w1", capacity=0), owner=4))
    waiting = waits(harness, r2)
    harness.resolve(r2.stop())
    failure_of(waiting, NoWorkerAvailable)
    assert harness.resolve(harness.redis_store.stats()).waiting == 0
    rows = harness.resolve(harness.redis_store.list_workers(None, None, 10)).workers
    assert [row.expires_in for row in rows] == [CONFIG.lease_grace]
    assert harness.server.command("ZSCORE", "amp:replicas", r2.replica) == b"$-1\r\n"


RUNS = 30
STEPS = 80
IDS = ["w0", "w1", "w2", "w3"]


class Ledger:
    """
    Each worker's capacity and answers since its last accepted update, and
    the calls waiting; what went over.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.capacity: Dict[str, int] = {}
        self.answered: Dict[str, int] = {}
        self.waiting: List[Deferred[Worker]] = []
        self.steps: List[str] = []
        self.over: List[str] = []
        # Answers delivered while an update is applied are served by it.
        self.updating = False
        self.held: List[str] = []

    def count(self, name: str) -> None:
        self.answered[name] = self.answered.get(name, 0) + 1
        self.steps.append(f"answered {name}")
        if self.answered[name] > self.capacity[name]:
            self.over.append(f"run {self.seed}: {name} over-dispatched: " + "; ".join(self.steps))

    def delivered(self, worker: Worker) -> Worker:
        if self.updating:
            self.held.append(worker.worker_id)
        else:
            self.count(worker.worker_id)
        return worker

    def accepted(self, worker_id: str, capacity: int, outcome: UpdateOutcome) -> None:
        if outcome is UpdateOutcome.ACCEPTED:
            self.capacity[worker_id], self.answered[worker_id] = capacity, 0
        for name in self.held:
            self.count(name)
        del self.held[:]

    def ended(self, result: object, call: Deferred[Worker]) -> None:
        if call in self.waiting:
            self.waiting.remove(call)
        if isinstance(result, Failure):
            result.trap(NoWorkerAvailable, CancelledError)


def random_run(run: RedisHarness, seed: int) -> None:
    """
    One random run through three replicas (see L{test_no_over_dispatch_random}).
    """
    stores = [run.redis_store, run.replica("r2"), run.replica("r3")]
    draw = random.Random(seed)
    ledger = Ledger(seed)
    seqs: Dict[str, int] = {}
    kinds = ["update", "update", "take", "wait", "wait", "cancel", "time", "gone", "lost"]
    for _ in range(STEPS):
        store = draw.choice(stores)
        kind = draw.choice(kinds)
        ledger.steps.append(f"{store.name} {kind}")
        if kind == "update":
            worker_id = draw.choice(IDS)
            seq = seqs[worker_id] = seqs.get(worker_id, 0) + draw.choice([0, 1, 1])
            capacity = draw.randint(0, 3)
            ledger.updating = True
            outcome = run.resolve(
                store.update(report(worker_id, capacity, seq), owner=draw.choice([None, 1, 2]))
            )
            ledger.updating = False
            ledger.accepted(worker_id, capacity, outcome)
        elif kind == "take":
            with contextlib.suppress(NoWorkerAvailable):
                ledger.delivered(run.resolve(store.next_worker()))
        elif kind == "wait":
            call = store.next_worker(None, draw.choice([0.5, 3.0]))
            ledger.waiting.append(call)
            call.addCallback(ledger.delivered).addBoth(ledger.ended, call)
            run.settle()
        elif kind == "cancel" and ledger.waiting:
            draw.choice(ledger.waiting).cancel()
            run.settle()
        elif kind == "time":
            run.advance(draw.choice([0.5, 2.0, 40.0]))
        elif kind == "gone":
            run.resolve(store.gone(draw.choice(IDS)))
        elif kind == "lost":
            run.resolve(store.owner_lost(draw.choice([1, 2])))
        assert not ledger.over, ledger.over[0]
        stats = run.resolve(store.stats())
        rows = run.resolve(store.list_workers(None, None, 100)).workers
        assert stats.waiting == len(ledger.waiting), f"run {seed}"
        assert stats.free_slots == sum(row.free for row in rows), f"run {seed}"
        assert stats.workers == len(rows), f"run {seed}"
        for row in rows:
            used = ledger.answered.get(row.worker_id, 0)
            assert row.free + used <= row.capacity, f"run {seed}"


def test_no_over_dispatch_random(harness: RedisHarness) -> None:
    """
    Random runs of updates, answers, waiting calls, cancels, removals,
    closed scheduler connections and time, through three replicas: no
    worker is answered more often than its capacity between two of its
    accepted updates, and the counters agree with the calls.
    """
    for seed in range(RUNS):
        run = type(harness)(CONFIG)
        try:
            random_run(run, seed)
        finally:
            run.close()


def test_registered_and_moved_logged(
    harness: RedisHarness, logs: List[MutableMapping[str, Any]]
) -> None:
    """
    A new worker is logged as registered, one that changes pools as moved
    (whatever its old pool's name, even an outcome's).
    """
    store = harness.redis_store
    harness.resolve(store.update(WorkerReport("w1", "h", 1, 1, pool="stale")))
    assert harness.resolve(store.update(WorkerReport("w1", "h", 1, 1))).accepted
    events = [(log["event"], log.get("pool"), log.get("from_pool")) for log in logs]
    assert ("worker registered", "stale", None) in events
    assert ("worker moved", "default", "stale") in events


class _DownLink:
    """
    A link whose store cannot be reached: every command fails at once.
    """

    def execute(self, *arguments: Any) -> Deferred[Any]:
        return fail(StoreUnavailable("the store is down"))

    def send(self, command: bytes) -> Deferred[Any]:
        return self.execute(command)

    send_connected = send

    ready = False

    def send_then(self, command: bytes, sink: Callable[[Any], object]) -> None:
        sink(StoreUnavailable("the store is down"))

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)


def test_call_timed_out_while_store_down_leaves_no_token(harness: RedisHarness) -> None:
    """
    A waiting call whose timeout comes while the link is down fails; once
    the link is back its token is withdrawn, so it neither keeps a place in
    line nor takes a slot that no call collects.
    """
    store = harness.redis_store
    link = harness.links[0]
    waiting = waits(harness, store, timeout=1.0)
    store.attach(_DownLink())
    harness.clock.advance(1.0)
    failure_of(waiting, StoreUnavailable)
    store.attach(link)
    harness.resolve(store.connected("primary-1"))
    assert harness.resolve(store.stats()).waiting == 0
    harness.resolve(store.update(report("w1", capacity=1)))
    assert harness.resolve(store.next_worker()).worker_id == "w1"


def test_answer_of_call_failed_while_store_down_goes_back(harness: RedisHarness) -> None:
    """
    A slot handed to a waiting call that could not collect it (the link
    down) goes back to its worker once the link is back.
    """
    store = harness.redis_store
    r2 = harness.replica("r2")
    link = harness.links[0]
    waiting = waits(harness, store, timeout=1.0)
    store.attach(_DownLink())
    harness.resolve(r2.update(report("w1", capacity=1)))
    failure_of(waiting, StoreUnavailable)
    store.attach(link)
    harness.resolve(store.connected("primary-1"))
    assert free(harness, "w1") == 1
    assert harness.resolve(r2.next_worker()).worker_id == "w1"


def test_owner_lost_while_store_down_gets_lease_grace(harness: RedisHarness) -> None:
    """
    A scheduler connection that closes while the store cannot be reached:
    its workers get the lease grace once the link is back (not kept
    forever), and nothing is left unhandled.
    """
    store = harness.redis_store
    link = harness.links[0]
    harness.resolve(store.update(report("w1", capacity=1), owner=7))
    store.attach(_DownLink())
    lost = store.owner_lost(7)
    assert result_of(lost) is None
    store.attach(link)
    harness.resolve(store.connected("primary-1"))
    rows = harness.resolve(store.list_workers(None, None, 10)).workers
    assert [row.expires_in for row in rows] == [CONFIG.lease_grace]
    harness.advance(CONFIG.lease_grace + 1)
    assert harness.resolve(store.stats()).workers == 0


def test_owner_lost_while_store_down_without_grace(
    logs: List[MutableMapping[str, Any]],
) -> None:
    """
    With no lease grace, the workers of a connection that closed while the
    store could not be reached are removed once the link is back, and the
    removals are logged as such.
    """
    for kind in (RedisHarness, ValkeyHarness):
        run = kind(DispatcherConfig(lease_grace=0.0))
        try:
            store = run.redis_store
            link = run.links[0]
            run.resolve(store.update(report("w1", capacity=1), owner=7))
            store.attach(_DownLink())
            assert result_of(store.owner_lost(7)) is None
            store.attach(link)
            run.resolve(store.connected("primary-1"))
            assert run.resolve(store.stats()).workers == 0
        finally:
            run.close()
    removed = [
        (log["worker_id"], log["reason"]) for log in logs if log["event"] == "worker removed"
    ]
    assert removed == [("w1", "lease expired")] * 2
