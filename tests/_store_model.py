"""
A stateful test of a store against a brute-force model, part of the store
conformance suite (see L{make_model_tests}).

The model keeps plain dicts and lists and follows the protocol text
literally: the next worker is found by scanning every worker of the pool, and
time-outs, ttls and lease graces by scanning everything when the clock moves.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from amp_dispatch_commands import NoWorkerAvailable, Overloaded
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from amp_dispatch._records import RegisteredWorker, Worker
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.store._interface import PoolFigures, StoreStats, WorkerReport
from tests._deferreds import fired
from tests._stores import StoreHarness

WORKER_IDS = [f"w{i}" for i in range(6)]
POOLS = ["a", "b"]
OWNERS = ["s1", "s2", "s3"]
TIMEOUTS = [0.5, 1.0, 2.0]
#: Binary fractions only, so that every sum of times is exact.
STEPS = [0.25, 0.5, 1.0]

#: What a call's Deferred came to: an answer, or how it failed.
Outcome = Union[Worker, str]
PENDING = "pending"
TIMED_OUT = "timed out"
CANCELLED = "cancelled"


class ModelWorker:
    """
    A worker as the model sees it.
    """

    def __init__(self, host: str, port: int, pool: str, capacity: int, entered: int) -> None:
        self.host = host
        self.port = port
        self.pool = pool
        self.capacity = capacity
        self.assigned = 0
        self.entered = entered
        self.answered: Optional[int] = None
        self.seq: Optional[int] = None
        self.ttl: Optional[float] = None
        self.ttl_deadline: Optional[float] = None
        self.lease_deadline: Optional[float] = None
        self.owner: Optional[str] = None

    @property
    def free(self) -> int:
        return self.capacity - self.assigned

    def deadline(self) -> Optional[float]:
        deadlines = [d for d in (self.ttl_deadline, self.lease_deadline) if d is not None]
        return min(deadlines) if deadlines else None


class Call:
    """
    A C{NextWorker} call that waited: what the model expects of it and what
    its Deferred did.
    """

    def __init__(self, pool: str, deadline: float, deferred: Deferred[Worker]) -> None:
        self.pool = pool
        self.deadline = deadline
        self.deferred = deferred
        self.expected: Outcome = PENDING
        self.actual: Outcome = PENDING
        deferred.addBoth(self._record)

    def _record(self, result: Union[Worker, Failure]) -> None:
        if isinstance(result, Failure):
            if result.check(NoWorkerAvailable):
                self.actual = TIMED_OUT
            elif result.check(CancelledError):
                self.actual = CANCELLED
            else:
                self.actual = f"unexpected {result!r}"
        else:
            self.actual = result


class StoreMachine(RuleBasedStateMachine):
    """
    Drives a store and the model with the same steps and compares them after
    every step.
    """

    make_harness: Callable[[DispatcherConfig], StoreHarness]

    def __init__(self) -> None:
        super().__init__()
        self.setup(1.5, 3)

    def setup(self, lease_grace: float, max_waiting: int) -> None:
        self.harness = self.make_harness(
            DispatcherConfig(lease_grace=lease_grace, max_waiting=max_waiting)
        )
        self.store = self.harness.store
        self.resolve = self.harness.resolve
        self.lease_grace = lease_grace
        self.max_waiting = max_waiting
        self.now = 0.0
        self.ticks = 0
        self.dispatched = 0
        self.workers: Dict[str, ModelWorker] = {}
        self.waiting: Dict[str, List[Call]] = {pool: [] for pool in POOLS}
        self.calls: List[Call] = []

    # -- the model ------------------------------------------------------------

    def tick(self) -> int:
        self.ticks += 1
        return self.ticks

    def head(self, pool: str) -> Optional[str]:
        """
        The worker to answer: a scan of the pool for the most free slots, ties
        to a never-answered worker (the first to enter), then to the one
        answered least recently.
        """
        best: Optional[str] = None
        best_key: Optional[tuple[int, int, int]] = None
        for worker_id, worker in self.workers.items():
            if worker.pool != pool or worker.free <= 0:
                continue
            if worker.answered is None:
                key = (worker.free, 1, -worker.entered)
            else:
                key = (worker.free, 0, -worker.answered)
            if best_key is None or key > best_key:
                best, best_key = worker_id, key
        return best

    def take(self, pool: str) -> Optional[Worker]:
        worker_id = self.head(pool)
        if worker_id is None:
            return None
        worker = self.workers[worker_id]
        worker.assigned += 1
        worker.answered = self.tick()
        self.dispatched += 1
        return Worker(worker_id, worker.host, worker.port)

    def renew(self, worker: ModelWorker, owner: Optional[str]) -> None:
        worker.owner = owner
        worker.lease_deadline = None
        worker.ttl_deadline = None if worker.ttl is None else self.now + worker.ttl

    def serve(self, pool: str) -> None:
        line = self.waiting[pool]
        while line:
            answer = self.take(pool)
            if answer is None:
                return
            line.pop(0).expected = answer

    def model_update(
        self,
        worker_id: str,
        host: str,
        port: int,
        capacity: int,
        pool: str,
        seq: Optional[int],
        ttl: Optional[float],
        owner: Optional[str],
    ) -> bool:
        worker = self.workers.get(worker_id)
        if worker is not None and seq is not None and worker.seq is not None:
            if seq < worker.seq:
                return False
            if seq == worker.seq:
                self.renew(worker, owner)
                return False
        if worker is None:
            worker = self.workers[worker_id] = ModelWorker(host, port, pool, capacity, self.tick())
        else:
            if worker.pool != pool:
                worker.pool = pool
                worker.entered = self.tick()
                worker.answered = None
            worker.host = host
            worker.port = port
            worker.capacity = capacity
            worker.assigned = 0
        worker.seq = seq
        worker.ttl = ttl if ttl else None
        self.renew(worker, owner)
        self.serve(pool)
        return True

    def pending(self) -> List[Call]:
        return [call for line in self.waiting.values() for call in line]

    # -- rules ----------------------------------------------------------------

    def teardown(self) -> None:
        harness = getattr(self, "harness", None)
        if harness is not None:
            harness.close()

    @initialize(lease_grace=st.sampled_from([0.0, 1.5]), max_waiting=st.sampled_from([3, 100]))
    def start(self, lease_grace: float, max_waiting: int) -> None:
        self.setup(lease_grace, max_waiting)

    @rule(
        worker_id=st.sampled_from(WORKER_IDS),
        host=st.sampled_from(["h1", "h2"]),
        port=st.integers(1, 3),
        capacity=st.integers(0, 3),
        pool=st.sampled_from(POOLS),
        seq=st.none() | st.integers(0, 4),
        ttl=st.sampled_from([None, 0.0, 1.0, 2.5]),
        owner=st.sampled_from([None, *OWNERS]),
    )
    def update(
        self,
        worker_id: str,
        host: str,
        port: int,
        capacity: int,
        pool: str,
        seq: Optional[int],
        ttl: Optional[float],
        owner: Optional[str],
    ) -> None:
        expected = self.model_update(worker_id, host, port, capacity, pool, seq, ttl, owner)
        outcome = self.resolve(
            self.store.update(
                WorkerReport(worker_id, host, port, capacity, pool=pool, seq=seq, ttl=ttl), owner
            )
        )
        assert outcome.accepted == expected

    @rule(
        index=st.integers(0, 20),
        capacity=st.integers(0, 3),
        resend=st.booleans(),
        owner=st.sampled_from([None, *OWNERS]),
    )
    def refresh(self, index: int, capacity: int, resend: bool, owner: Optional[str]) -> None:
        """
        The scheduler's everyday updates of a registered worker (same pool and
        ttl): its free slots with the next seq, or (C{resend}) its last update
        sent again with the same seq, as after a reconnect, maybe on another
        connection (C{owner} None: the one that holds it).
        """
        if not self.workers:
            return
        worker_id = sorted(self.workers)[index % len(self.workers)]
        worker = self.workers[worker_id]
        if resend:
            seq = worker.seq
            capacity = worker.capacity
        else:
            seq = None if worker.seq is None else worker.seq + 1
        if owner is None:
            owner = worker.owner
        host, port, pool, ttl = worker.host, worker.port, worker.pool, worker.ttl
        expected = self.model_update(worker_id, host, port, capacity, pool, seq, ttl, owner)
        outcome = self.resolve(
            self.store.update(
                WorkerReport(worker_id, host, port, capacity, pool=pool, seq=seq, ttl=ttl), owner
            )
        )
        assert outcome.accepted == expected

    @rule(worker_id=st.sampled_from(WORKER_IDS))
    def gone(self, worker_id: str) -> None:
        expected = self.workers.pop(worker_id, None) is not None
        assert self.resolve(self.store.gone(worker_id)) == expected

    @rule(owner=st.sampled_from(OWNERS))
    def owner_lost(self, owner: str) -> None:
        for worker_id, worker in list(self.workers.items()):
            if worker.owner != owner:
                continue
            worker.owner = None
            if self.lease_grace <= 0:
                del self.workers[worker_id]
            else:
                worker.lease_deadline = self.now + self.lease_grace
        self.resolve(self.store.owner_lost(owner))

    @rule(
        pool=st.sampled_from(POOLS),
        timeout=st.sampled_from([None, 0.0]),
        times=st.integers(1, 4),
    )
    def next_worker(self, pool: str, timeout: Optional[float], times: int) -> None:
        for _ in range(times):
            expected = None if self.waiting[pool] else self.take(pool)
            try:
                answer = self.resolve(self.store.next_worker(pool, timeout))
            except NoWorkerAvailable:
                assert expected is None
            else:
                assert answer == expected

    @rule(pool=st.sampled_from(POOLS), timeout=st.sampled_from(TIMEOUTS))
    def next_worker_waiting(self, pool: str, timeout: float) -> None:
        expected = None if self.waiting[pool] else self.take(pool)
        overloaded = expected is None and len(self.pending()) >= self.max_waiting
        try:
            answer = self.store.next_worker(pool, timeout)
            self.harness.settle()
            if not isinstance(answer, Deferred) or fired(answer):
                answer = self.resolve(answer)
        except Overloaded:
            assert overloaded
            return
        assert not overloaded
        if expected is not None:
            assert answer == expected
            return
        assert isinstance(answer, Deferred)
        call = Call(pool, self.now + timeout, answer)
        self.calls.append(call)
        self.waiting[pool].append(call)

    @rule(index=st.integers(0, 20))
    def cancel(self, index: int) -> None:
        pending = self.pending()
        if not pending:
            return
        call = pending[index % len(pending)]
        self.waiting[call.pool].remove(call)
        call.expected = CANCELLED
        call.deferred.cancel()
        self.harness.settle()  # a shared store hears of it by a script

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step: float) -> None:
        self.now += step
        for worker_id, worker in list(self.workers.items()):
            deadline = worker.deadline()
            if deadline is not None and deadline <= self.now:
                del self.workers[worker_id]
        for line in self.waiting.values():
            for call in list(line):
                if call.deadline <= self.now:
                    line.remove(call)
                    call.expected = TIMED_OUT
        self.harness.advance(step)

    # -- invariants -----------------------------------------------------------

    def infos(
        self, pool: Optional[str] = None, after: Optional[str] = None
    ) -> List[RegisteredWorker]:
        infos = []
        for worker_id in sorted(self.workers):
            worker = self.workers[worker_id]
            if pool is not None and worker.pool != pool:
                continue
            if after is not None and worker_id <= after:
                continue
            deadline = worker.deadline()
            infos.append(
                RegisteredWorker(
                    worker_id=worker_id,
                    host=worker.host,
                    port=worker.port,
                    pool=worker.pool,
                    capacity=worker.capacity,
                    free=worker.free,
                    expires_in=-1.0 if deadline is None else deadline - self.now,
                )
            )
        return infos

    @invariant()
    def stats_agree(self) -> None:
        assert self.resolve(self.store.stats()) == StoreStats(
            workers=len(self.workers),
            free_slots=sum(worker.free for worker in self.workers.values()),
            waiting=len(self.pending()),
            dispatched=self.dispatched,
        )

    @invariant()
    def pools_agree(self) -> None:
        expected = []
        for pool in POOLS:
            workers = [worker for worker in self.workers.values() if worker.pool == pool]
            if workers or self.waiting[pool]:
                free = sum(worker.free for worker in workers)
                expected.append(PoolFigures(pool, len(workers), free, len(self.waiting[pool])))
        named = self.resolve(self.store.pools(POOLS, 0))
        assert named == expected, (named, expected)
        found = self.resolve(self.store.pools([], len(POOLS)))
        assert sorted(found, key=lambda figures: figures.pool) == expected

    @invariant()
    def workers_agree(self) -> None:
        assert self.rows() == self.infos()
        for pool in POOLS:
            assert self.rows(pool) == self.infos(pool)
        assert self.rows(after="w2") == self.infos(after="w2")
        assert self.rows("b", after="w3") == self.infos("b", after="w3")
        assert (
            self.resolve(self.store.list_workers(None, "w1", 2)).workers
            == self.infos(after="w1")[:2]
        )

    def rows(
        self, pool: Optional[str] = None, after: Optional[str] = None
    ) -> List[RegisteredWorker]:
        return list(self.resolve(self.store.list_workers(pool, after, 1 << 30)).workers)

    @invariant()
    def calls_agree(self) -> None:
        for call in self.calls:
            assert call.actual == call.expected

    @invariant()
    def no_slot_while_waiting(self) -> None:
        """
        The model's own consistency: a pool with waiting calls has no free
        slot (an update that frees one answers them first).
        """
        for pool, line in self.waiting.items():
            if line:
                assert self.head(pool) is None

    @invariant()
    def store_consistent(self) -> None:
        self.harness.check()


def make_model_tests(make_harness: Callable[[DispatcherConfig], StoreHarness]) -> type:
    """
    The model test of the store that C{make_harness} makes.
    """
    machine: Any = type(
        "StoreMachine", (StoreMachine,), {"make_harness": staticmethod(make_harness)}
    )
    case: Any = machine.TestCase
    case.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
    return case  # type: ignore[no-any-return]
