"""
The store conformance suite: what every L{IWorkerStore} must do, written once
and run against each store (Flocker's C{make_istatepersister_tests}
pattern).  L{make_store_tests} makes the test classes for one store from its
harness (see L{tests._stores}); the brute-force model of
L{tests._store_model} runs through it too.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, MutableMapping, Optional, Tuple, Type

import pytest
from amp_dispatch_commands import DEFAULT_POOL, NoWorkerAvailable, Overloaded
from twisted.internet.defer import CancelledError, Deferred

from amp_dispatch._records import RegisteredWorker, Worker
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.store._interface import PoolFigures, StoreStats, WorkerReport
from tests._deferreds import assert_no_result, failure_of, result_of
from tests._store_model import make_model_tests
from tests._stores import StoreHarness

#: Makes the harness of one store with the dispatcher's settings.
MakeHarness = Callable[[DispatcherConfig], StoreHarness]


class _Resolving:
    """
    A store's methods, each returning the value of its answer (see
    L{StoreHarness.resolve}): what the tests call as C{self.store}.
    """

    def __init__(self, harness: StoreHarness) -> None:
        self._harness = harness

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._harness.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._harness.resolve(method(*args, **kwargs))

        return call


class StoreTests:
    """
    Helpers over one store under test: C{self.store} calls it and awaits its
    answers; C{self.harness} holds it, its clock and its log lines.
    """

    lease_grace = 30.0
    max_waiting = 10_000
    max_waiting_per_owner = 1_000
    make_harness: MakeHarness

    @pytest.fixture(autouse=True)
    def _store(self, logs: List[MutableMapping[str, Any]]) -> Iterator[None]:
        self.logs = logs
        self.harness = self.make_harness(
            DispatcherConfig(
                lease_grace=self.lease_grace,
                max_waiting=self.max_waiting,
                max_waiting_per_connection=self.max_waiting_per_owner,
            )
        )
        self.store: Any = _Resolving(self.harness)
        yield
        self.harness.close()

    def add(
        self,
        worker_id: str,
        capacity: int = 1,
        pool: Optional[str] = None,
        seq: Optional[int] = None,
        ttl: Optional[float] = None,
        owner: Optional[str] = None,
        host: Optional[str] = None,
        port: int = 7000,
    ) -> bool:
        """
        Send a C{WorkerUpdate}; whether it was accepted.
        """
        outcome = self.store.update(
            WorkerReport(
                worker_id,
                host if host is not None else f"host-{worker_id}",
                port,
                capacity,
                pool=pool,
                seq=seq,
                ttl=ttl,
            ),
            owner,
        )
        return bool(outcome.accepted)

    def take(self, pool: Optional[str] = None) -> str:
        """
        Send a C{NextWorker} that must be answered at once; return the id.
        """
        answer = self.store.next_worker(pool)
        assert isinstance(answer, Worker)
        return answer.worker_id

    def takes(self, n: int, pool: Optional[str] = None) -> List[str]:
        return [self.take(pool) for _ in range(n)]

    def wait(
        self, pool: Optional[str] = None, timeout: float = 10.0, owner: Optional[str] = None
    ) -> Deferred[Worker]:
        """
        Send a C{NextWorker} that must wait.
        """
        answer = self.harness.store.next_worker(pool, timeout=timeout, owner=owner)
        assert isinstance(answer, Deferred)
        self.harness.settle()
        return answer

    def rows(
        self, pool: Optional[str] = None, after: Optional[str] = None
    ) -> List[RegisteredWorker]:
        return list(self.store.list_workers(pool, after, 1 << 30).workers)

    def ids(self, pool: Optional[str] = None, after: Optional[str] = None) -> List[str]:
        return [info.worker_id for info in self.rows(pool, after)]

    def info(self, worker_id: str) -> RegisteredWorker:
        for info in self.rows():
            if info.worker_id == worker_id:
                return info
        raise AssertionError(f"{worker_id} is not registered")

    def free(self, worker_id: str) -> int:
        return self.info(worker_id).free

    def removals(self) -> List[Tuple[str, str]]:
        return [
            (log["worker_id"], log["reason"])
            for log in self.logs
            if log["event"] == "worker removed"
        ]


class Order(StoreTests):
    """
    Which worker C{NextWorker} answers.
    """

    def test_most_free_slots_first(self) -> None:
        """
        The worker with the most free slots is answered.
        """
        self.add("a", 1)
        self.add("b", 3)
        self.add("c", 2)
        assert self.take() == "b"

    def test_answer_takes_slot(self) -> None:
        """
        Every answer takes one slot of the worker it names.
        """
        self.add("a", 3)
        self.take()
        assert self.free("a") == 2
        assert self.info("a").capacity == 3

    def test_assumed_load(self) -> None:
        """
        Answers since the last update count against a worker's capacity: free
        slots = capacity - answers naming it.
        """
        self.add("a", 3)
        self.add("b", 2)
        # a 3/b 2 -> a; a 2/b 2 -> b (never answered); a 2/b 1 -> a; a 1/b 1 -> b
        assert self.takes(4) == ["a", "b", "a", "b"]
        assert (self.free("a"), self.free("b")) == (1, 0)

    def test_update_resets_assumed_load(self) -> None:
        """
        An accepted update replaces the assumed load: the new capacity is all
        free.
        """
        self.add("a", 2)
        self.takes(2)
        assert self.free("a") == 0
        assert self.add("a", 2) is True
        assert self.free("a") == 2
        assert self.take() == "a"

    def test_update_replaces_capacity(self) -> None:
        """
        An accepted update sets capacity, host and port to the new values.
        """
        self.add("a", 5)
        self.take()
        self.add("a", 1, host="elsewhere", port=9)
        info = self.info("a")
        assert (info.capacity, info.free, info.host, info.port) == (1, 1, "elsewhere", 9)

    def test_round_robin_among_equals(self) -> None:
        """
        Among workers with as many free slots, the one answered least recently
        goes first: equals take turns.
        """
        for worker_id in ["a", "b", "c"]:
            self.add(worker_id, 5)
        assert self.takes(6) == ["a", "b", "c", "a", "b", "c"]

    def test_never_answered_before_answered(self) -> None:
        """
        A worker never answered goes before an answered one with as many free
        slots, even when it entered later.
        """
        self.add("a", 2)
        assert self.take() == "a"
        self.add("b", 1)
        assert self.take() == "b"

    def test_never_answered_earliest_entered_first(self) -> None:
        """
        Among never-answered equals, the one that entered the pool first goes
        first (not the smallest id).
        """
        for worker_id in ["c", "a", "b"]:
            self.add(worker_id, 1)
        assert self.takes(3) == ["c", "a", "b"]

    def test_pool_move_counts_as_entering(self) -> None:
        """
        A worker that moves to another pool and back enters again: it goes
        after the equals that entered before its return.
        """
        self.add("a", 1, pool="x")
        self.add("b", 1, pool="x")
        self.add("a", 1, pool="y")
        self.add("a", 1, pool="x")
        assert self.takes(2, "x") == ["b", "a"]

    def test_pool_move_forgets_answers(self) -> None:
        """
        A worker answered in its old pool enters the new one never answered:
        it goes before the new pool's answered equals.
        """
        self.add("a", 2, pool="x")
        self.add("b", 2, pool="y")
        assert self.take("y") == "b"
        assert self.take("x") == "a"
        self.add("a", 1, pool="y")
        # b (1 free, answered) and a (1 free, entered y just now, never answered in y)
        assert self.take("y") == "a"

    def test_pool_move(self) -> None:
        """
        A worker that changes pool is answered for the new pool only.
        """
        self.add("a", 1, pool="x")
        self.add("a", 1, pool="y")
        assert self.info("a").pool == "y"
        assert self.ids("x") == []
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker("x")
        assert self.take("y") == "a"

    def test_update_after_removal_counts_as_entering(self) -> None:
        """
        A worker registered again after its removal enters anew: it goes after
        the equals that stayed.
        """
        self.add("a", 1)
        self.add("b", 1)
        self.store.gone("a")
        self.add("a", 1)
        assert self.takes(2) == ["b", "a"]

    def test_update_keeps_last_answered(self) -> None:
        """
        An update does not erase when a worker was last answered: an answered
        worker stays behind a never-answered equal.
        """
        self.add("a", 1)
        self.add("b", 1)
        assert self.take() == "a"
        self.add("a", 1)
        assert self.takes(2) == ["b", "a"]

    def test_update_order_does_not_matter(self) -> None:
        """
        Updated equals are answered least recently answered first, not in the
        order of their updates.
        """
        self.add("a", 1)
        self.add("b", 1)
        assert self.takes(2) == ["a", "b"]
        self.add("b", 1)
        self.add("a", 1)
        assert self.takes(2) == ["a", "b"]

    def test_capacity_zero_never_answered(self) -> None:
        """
        A worker registered with capacity 0 (alive but full) is never answered.
        """
        self.add("a", 0)
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()
        assert self.info("a").free == 0

    def test_full_worker_never_answered(self) -> None:
        """
        A worker whose slots are all taken is not answered again, another one
        is.
        """
        self.add("a", 1)
        self.add("b", 1)
        assert self.take() == "a"
        assert self.take() == "b"
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()

    def test_update_to_zero_capacity(self) -> None:
        """
        An update with capacity 0 makes a worker unanswerable.
        """
        self.add("a", 3)
        self.add("a", 0)
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()

    def test_pools(self) -> None:
        """
        A call is answered from its pool only.
        """
        self.add("a", 5, pool="x")
        self.add("b", 1, pool="y")
        assert self.take("y") == "b"
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker("y")

    def test_default_pool(self) -> None:
        """
        An update naming no pool registers in pool C{"default"}, which a call
        naming no pool is answered from.
        """
        self.add("a", 1)
        self.add("b", 1, pool="x")
        assert self.info("a").pool == "default"
        assert self.take() == "a"
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()
        self.add("c", 1, pool="default")
        assert self.take() == "c"

    def test_answer_fields(self) -> None:
        """
        The answer carries the worker's id, host and port.
        """
        self.add("a", 1, host="10.0.0.1", port=8123)
        assert self.store.next_worker() == Worker("a", "10.0.0.1", 8123)

    def test_no_worker_available_no_timeout(self) -> None:
        """
        With no free slot and no timeout, the call fails at once with
        L{NoWorkerAvailable} and waits for nothing.
        """
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker("unknown-pool")
        assert self.store.stats().waiting == 0
        assert self.harness.timers() == []

    def test_no_worker_available_timeout_zero(self) -> None:
        """
        A timeout of 0 is no timeout: L{NoWorkerAvailable} at once.
        """
        self.add("a", 0)
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker(None, 0)
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker(None, 0.0)
        assert self.store.stats().waiting == 0

    def test_free_slot_answered_at_once_with_timeout(self) -> None:
        """
        A call with a timeout is answered at once when a slot is free.
        """
        self.add("a", 1)
        assert self.store.next_worker(timeout=5.0) == Worker("a", "host-a", 7000)


class Seq(StoreTests):
    """
    Stale and duplicate updates.
    """

    def test_higher_seq_accepted(self) -> None:
        """
        An update with a higher seq than the last accepted is accepted.
        """
        assert self.add("a", 1, seq=1) is True
        assert self.add("a", 4, seq=2) is True
        assert self.info("a").capacity == 4

    def test_stale_seq_rejected(self) -> None:
        """
        An update with a lower seq than the last accepted is refused and
        changes nothing: capacity, host, assumed load, pool.
        """
        self.add("a", 3, seq=5)
        self.take()
        before = self.info("a")
        assert self.add("a", 9, seq=4, host="other", pool="x") is False
        assert self.info("a") == before
        assert before.free == 2

    def test_stale_seq_compares_with_last_accepted(self) -> None:
        """
        A refused update does not lower the stored seq.
        """
        self.add("a", 1, seq=5)
        self.add("a", 2, seq=3)
        assert self.add("a", 2, seq=4) is False
        assert self.info("a").capacity == 1

    def test_stale_seq_does_not_renew_ttl(self) -> None:
        """
        A stale update does not renew the worker's ttl.
        """
        self.add("a", 1, seq=5, ttl=10.0)
        self.harness.advance(6.0)
        self.add("a", 1, seq=4, ttl=10.0)
        assert self.info("a").expires_in == 4.0
        self.harness.advance(4.0)
        assert self.ids() == []

    def test_stale_seq_does_not_take_ownership(self) -> None:
        """
        A stale update from another connection does not take the worker:
        losing the first connection still starts the lease grace.
        """
        first, second = "first", "second"
        self.add("a", 1, seq=5, owner=first)
        self.add("a", 1, seq=4, owner=second)
        self.store.owner_lost(first)
        assert self.info("a").expires_in == 30.0

    def test_duplicate_seq_rejected(self) -> None:
        """
        An update with the same seq as the last accepted is refused; the
        worker's capacity, host, pool and assumed load stay.
        """
        self.add("a", 2, seq=3)
        self.take()
        before = self.info("a")
        assert self.add("a", 5, seq=3, host="other", pool="x") is False
        assert self.info("a") == before
        assert before.free == 1

    def test_duplicate_seq_keeps_ttl_value(self) -> None:
        """
        A duplicate does not replace the ttl with its own.
        """
        self.add("a", 1, seq=3, ttl=10.0)
        self.add("a", 1, seq=3, ttl=2.0)
        assert self.info("a").expires_in == 10.0

    def test_duplicate_seq_renews_ttl(self) -> None:
        """
        A duplicate restarts the worker's ttl: it goes ttl seconds after the
        duplicate, not after the accepted update.
        """
        self.add("a", 1, seq=3, ttl=10.0)
        self.harness.advance(6.0)
        assert self.add("a", 1, seq=3, ttl=10.0) is False
        assert self.info("a").expires_in == 10.0
        self.harness.advance(6.0)
        assert self.ids() == ["a"]
        assert self.info("a").expires_in == 4.0
        self.harness.advance(4.0)
        assert self.ids() == []

    def test_duplicate_seq_takes_ownership(self) -> None:
        """
        A duplicate from another connection takes the worker: losing the old
        connection starts no lease grace, losing the new one does.
        """
        first, second = "first", "second"
        self.add("a", 1, seq=3, owner=first)
        assert self.add("a", 1, seq=3, owner=second) is False
        self.store.owner_lost(first)
        assert self.info("a").expires_in == -1.0
        self.harness.advance(60.0)
        assert self.ids() == ["a"]
        self.store.owner_lost(second)
        assert self.info("a").expires_in == 30.0
        self.harness.advance(30.0)
        assert self.ids() == []

    def test_duplicate_seq_ends_lease_grace(self) -> None:
        """
        A duplicate from another connection during the lease grace keeps the
        worker.
        """
        first, second = "first", "second"
        self.add("a", 1, seq=3, owner=first)
        self.store.owner_lost(first)
        self.harness.advance(10.0)
        assert self.add("a", 1, seq=3, owner=second) is False
        assert self.info("a").expires_in == -1.0
        self.harness.advance(60.0)
        assert self.ids() == ["a"]

    def test_no_seq_accepted(self) -> None:
        """
        An update without seq is accepted whatever seq was stored.
        """
        self.add("a", 1, seq=5)
        assert self.add("a", 4) is True
        assert self.info("a").capacity == 4

    def test_no_seq_forgets_seq(self) -> None:
        """
        An update without seq forgets the stored seq: any seq is accepted next.
        """
        self.add("a", 1, seq=5)
        self.add("a", 1)
        assert self.add("a", 2, seq=1) is True
        assert self.info("a").capacity == 2

    def test_seq_after_no_seq_accepted(self) -> None:
        """
        The first seq given to a worker registered without one is accepted,
        and then guards the next updates.
        """
        self.add("a", 1)
        assert self.add("a", 2, seq=0) is True
        assert self.add("a", 3, seq=0) is False
        assert self.info("a").capacity == 2

    def test_removed_worker_seq_forgotten(self) -> None:
        """
        A removed worker's seq is forgotten: its next update is accepted
        whatever its seq.
        """
        self.add("a", 1, seq=5)
        self.store.gone("a")
        assert self.add("a", 2, seq=1) is True
        assert self.info("a").capacity == 2

    def test_expired_worker_seq_forgotten(self) -> None:
        """
        A worker removed by its ttl forgets its seq too.
        """
        self.add("a", 1, seq=5, ttl=1.0)
        self.harness.advance(1.0)
        assert self.add("a", 1, seq=5) is True
        assert self.ids() == ["a"]


class Gone(StoreTests):
    """
    C{WorkerGone}.
    """

    def test_gone_known(self) -> None:
        """
        C{gone} of a registered worker removes it at once and answers True.
        """
        self.add("a", 2)
        assert self.store.gone("a") is True
        assert self.ids() == []
        assert self.store.stats().workers == 0
        assert self.store.stats().free_slots == 0
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()

    def test_gone_unknown(self) -> None:
        """
        C{gone} of an unknown worker answers False and changes nothing.
        """
        self.add("a", 2)
        assert self.store.gone("b") is False
        assert self.ids() == ["a"]
        assert self.store.stats().free_slots == 2

    def test_gone_idempotent(self) -> None:
        """
        A second C{gone} of the same worker answers False.
        """
        self.add("a", 1)
        self.add("b", 1)
        assert self.store.gone("a") is True
        assert self.store.gone("a") is False
        assert self.ids() == ["b"]

    def test_gone_others_stay(self) -> None:
        """
        C{gone} removes only the named worker: the others are still answered.
        """
        self.add("a", 1)
        self.add("b", 1)
        self.store.gone("a")
        assert self.take() == "b"

    def test_gone_logged(self) -> None:
        """
        The removal is logged with reason C{gone}.
        """
        self.add("a", 1)
        self.store.gone("a")
        assert self.removals() == [("a", "gone")]

    def test_gone_logged_with_pool(self) -> None:
        """
        The removal's line names the worker's pool.
        """
        self.add("a", 1, pool="gpu")
        self.store.gone("a")
        [line] = [log for log in self.logs if log["event"] == "worker removed"]
        assert line["pool"] == "gpu"


class Lease(StoreTests):
    """
    Workers outlive the loss of their scheduler connection by the lease grace.
    """

    def test_owner_lost_logged_with_workers(self) -> None:
        """
        The start of a lease grace is logged once, with the number of
        workers the connection held; a connection that held none logs
        nothing.
        """
        self.add("a", 1, owner="s1")
        self.add("b", 1, owner="s1")
        self.store.owner_lost("s1")
        self.store.owner_lost("s2")
        lines = [log for log in self.logs if log["event"] == "lease grace started"]
        assert [(line["workers"], line["grace"]) for line in lines] == [(2, self.lease_grace)]

    def test_owner_lost_grace_removes_after_grace(self) -> None:
        """
        When the owning connection is lost, its workers go C{lease_grace}
        seconds later, not before.
        """
        owner = "s"
        self.add("a", 1, owner=owner)
        self.harness.advance(5.0)
        self.store.owner_lost(owner)
        self.harness.advance(29.5)
        assert self.ids() == ["a"]
        assert self.info("a").expires_in == 0.5
        self.harness.advance(0.5)
        assert self.ids() == []
        assert self.removals() == [("a", "lease expired")]

    def test_answered_during_grace(self) -> None:
        """
        A worker in its lease grace is still answered.
        """
        owner = "s"
        self.add("a", 1, owner=owner)
        self.store.owner_lost(owner)
        assert self.take() == "a"

    def test_owner_lost_only_its_workers(self) -> None:
        """
        Losing a connection starts the grace of its workers only.
        """
        first, second = "first", "second"
        self.add("a", 1, owner=first)
        self.add("b", 1, owner=second)
        self.add("c", 1)
        self.store.owner_lost(first)
        self.harness.advance(30.0)
        assert self.ids() == ["b", "c"]

    def test_update_from_other_owner_keeps(self) -> None:
        """
        An accepted update from another connection during the grace keeps the
        worker: that connection holds it now.
        """
        first, second = "first", "second"
        self.add("a", 1, owner=first)
        self.store.owner_lost(first)
        self.harness.advance(10.0)
        assert self.add("a", 1, owner=second) is True
        assert self.info("a").expires_in == -1.0
        self.harness.advance(60.0)
        assert self.ids() == ["a"]
        self.store.owner_lost(second)
        self.harness.advance(30.0)
        assert self.ids() == []

    def test_update_moves_ownership(self) -> None:
        """
        An accepted update from another connection takes the worker: losing
        the old connection starts no grace.
        """
        first, second = "first", "second"
        self.add("a", 1, owner=first)
        self.add("a", 1, owner=second)
        self.store.owner_lost(first)
        assert self.info("a").expires_in == -1.0
        self.harness.advance(60.0)
        assert self.ids() == ["a"]

    def test_owner_lost_unknown(self) -> None:
        """
        Losing a connection that holds no worker changes nothing.
        """
        self.add("a", 1, owner="s")
        self.store.owner_lost("other")
        assert self.info("a").expires_in == -1.0
        assert self.harness.timers() == []

    def test_owner_lost_twice(self) -> None:
        """
        Losing the same connection twice does not restart the grace.
        """
        owner = "s"
        self.add("a", 1, owner=owner)
        self.store.owner_lost(owner)
        self.harness.advance(20.0)
        self.store.owner_lost(owner)
        self.harness.advance(10.0)
        assert self.ids() == []

    def test_gone_during_grace(self) -> None:
        """
        A worker removed during its grace and registered again is not removed
        by the old grace.
        """
        owner = "s"
        self.add("a", 1, owner=owner)
        self.store.owner_lost(owner)
        self.store.gone("a")
        self.add("a", 1, owner="t")
        self.harness.advance(60.0)
        assert self.ids() == ["a"]

    def test_removed_worker_leaves_owner(self) -> None:
        """
        A worker removed and registered again by another connection is not
        affected when its first connection is lost.
        """
        first, second = "first", "second"
        self.add("a", 1, owner=first)
        self.store.gone("a")
        self.add("a", 1, owner=second)
        self.store.owner_lost(first)
        assert self.info("a").expires_in == -1.0


class NoLeaseGrace(StoreTests):
    """
    With a lease grace of 0, workers go with their connection.
    """

    lease_grace = 0.0

    def test_owner_lost_removes_at_once(self) -> None:
        """
        Losing the connection removes its workers at once, and only them.
        """
        first, second = "first", "second"
        self.add("a", 2, owner=first)
        self.add("b", 1, owner=first)
        self.add("c", 1, owner=second)
        self.store.owner_lost(first)
        assert self.ids() == ["c"]
        assert self.store.stats() == StoreStats(1, 1, 0, 0)
        assert sorted(self.removals()) == [("a", "lease expired"), ("b", "lease expired")]


class Ttl(StoreTests):
    """
    An update with a ttl removes its worker ttl seconds after its last
    accepted or duplicate update.
    """

    def test_ttl_removes(self) -> None:
        """
        A worker goes ttl seconds after its update, not before.
        """
        self.add("a", 1, ttl=5.0)
        self.harness.advance(4.5)
        assert self.ids() == ["a"]
        self.harness.advance(0.5)
        assert self.ids() == []
        assert self.store.stats().workers == 0
        assert self.removals() == [("a", "ttl expired")]

    def test_ttl_renewed_by_update(self) -> None:
        """
        An accepted update restarts the ttl.
        """
        self.add("a", 1, ttl=5.0)
        self.harness.advance(4.0)
        self.add("a", 1, ttl=5.0)
        self.harness.advance(4.0)
        assert self.ids() == ["a"]
        self.harness.advance(1.0)
        assert self.ids() == []

    def test_ttl_replaced_by_update(self) -> None:
        """
        An accepted update's ttl replaces the old one.
        """
        self.add("a", 1, ttl=50.0)
        self.add("a", 1, ttl=2.0)
        self.harness.advance(2.0)
        assert self.ids() == []

    def test_update_without_ttl_clears_ttl(self) -> None:
        """
        An accepted update without ttl removes the ttl.
        """
        self.add("a", 1, ttl=5.0)
        self.add("a", 1)
        assert self.info("a").expires_in == -1.0
        self.harness.advance(60.0)
        assert self.ids() == ["a"]

    def test_ttl_zero_is_no_ttl(self) -> None:
        """
        A ttl of 0 means no ttl.
        """
        self.add("a", 1, ttl=0.0)
        assert self.info("a").expires_in == -1.0
        self.harness.advance(60.0)
        assert self.ids() == ["a"]

    def test_ttl_each_worker(self) -> None:
        """
        Each worker goes at its own ttl.
        """
        self.add("a", 1, ttl=3.0)
        self.add("b", 1, ttl=1.0)
        self.add("c", 1)
        self.harness.advance(1.0)
        assert self.ids() == ["a", "c"]
        self.harness.advance(2.0)
        assert self.ids() == ["c"]

    def test_ttl_with_lease(self) -> None:
        """
        A worker with a ttl and a lease grace goes at whichever comes first.
        """
        owner = "s"
        self.add("a", 1, ttl=10.0, owner=owner)
        self.add("b", 1, ttl=50.0, owner=owner)
        self.store.owner_lost(owner)
        assert self.info("a").expires_in == 10.0
        assert self.info("b").expires_in == 30.0
        self.harness.advance(10.0)
        assert self.ids() == ["b"]
        self.harness.advance(20.0)
        assert self.ids() == []
        assert self.removals() == [("a", "ttl expired"), ("b", "lease expired")]

    def test_ttl_of_reregistered_worker(self) -> None:
        """
        The ttl of a removed worker does not remove it once registered again
        without ttl.
        """
        self.add("a", 1, ttl=5.0)
        self.store.gone("a")
        self.add("a", 1)
        self.harness.advance(10.0)
        assert self.ids() == ["a"]


class Waiting(StoreTests):
    """
    Calls with a timeout wait for a free slot.
    """

    def test_waits(self) -> None:
        """
        With no free slot and a timeout, the call waits: a Deferred with no
        result yet, counted in C{stats().waiting}.
        """
        self.add("a", 0)
        d = self.wait()
        assert_no_result(d)
        assert self.store.stats().waiting == 1

    def test_answered_by_update(self) -> None:
        """
        A waiting call is answered when an update frees a slot, and takes it.
        """
        d = self.wait()
        self.add("a", 1)
        assert result_of(d) == Worker("a", "host-a", 7000)
        assert self.store.stats() == StoreStats(1, 0, 0, 1)
        assert self.harness.timers() == []

    def test_first_come_first_served(self) -> None:
        """
        Waiting calls of a pool are answered in the order they came.
        """
        first, second, third = self.wait(), self.wait(), self.wait()
        self.add("a", 2)
        assert result_of(first).worker_id == "a"
        assert result_of(second).worker_id == "a"
        assert_no_result(third)
        self.add("b", 1)
        assert result_of(third).worker_id == "b"

    def test_waiters_served_most_free_first(self) -> None:
        """
        Waiting calls answered by one update follow the queue's order.
        """
        self.add("a", 0)
        self.add("b", 0)
        waiters = [self.wait() for _ in range(3)]
        self.add("b", 1)
        self.add("a", 2)
        assert [result_of(d).worker_id for d in waiters] == ["b", "a", "a"]

    def test_new_call_queues_behind_waiters(self) -> None:
        """
        A call that arrives while others wait does not pass them: it is
        answered after them.
        """
        first = self.wait()
        second = self.wait()
        self.add("a", 1)
        assert result_of(first).worker_id == "a"
        assert_no_result(second)
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()
        self.add("b", 1)
        assert result_of(second).worker_id == "b"

    def test_only_its_pool(self) -> None:
        """
        A waiting call is not answered by an update in another pool.
        """
        d = self.wait("x")
        self.add("a", 1, pool="y")
        assert_no_result(d)
        self.add("b", 1, pool="x")
        assert result_of(d).worker_id == "b"

    def test_pool_move_answers(self) -> None:
        """
        A worker moving into a pool answers that pool's waiting calls.
        """
        self.add("a", 1, pool="y")
        d = self.wait("x")
        self.add("a", 1, pool="x")
        assert result_of(d).worker_id == "a"

    def test_capacity_zero_update_does_not_answer(self) -> None:
        """
        An update with no free slot answers no waiting call.
        """
        d = self.wait()
        self.add("a", 0)
        assert_no_result(d)

    def test_duplicate_does_not_answer(self) -> None:
        """
        A duplicate update (refused) frees no slot and answers no waiting call.
        """
        self.add("a", 1, seq=1)
        self.take()
        d = self.wait()
        assert self.add("a", 1, seq=1) is False
        assert_no_result(d)

    def test_timeout(self) -> None:
        """
        A waiting call fails with L{NoWorkerAvailable} when its timeout runs
        out, and leaves the line.
        """
        d = self.wait(timeout=5.0)
        self.harness.advance(4.5)
        assert_no_result(d)
        self.harness.advance(0.5)
        failure_of(d, NoWorkerAvailable)
        assert self.store.stats().waiting == 0

    def test_timed_out_takes_no_slot(self) -> None:
        """
        A call that timed out takes no slot freed later.
        """
        d = self.wait(timeout=1.0)
        self.harness.advance(1.0)
        failure_of(d, NoWorkerAvailable)
        self.add("a", 1)
        assert self.store.stats() == StoreStats(1, 1, 0, 0)

    def test_timeout_others_stay(self) -> None:
        """
        A timeout removes only its call: the one behind it is still answered.
        """
        first = self.wait(timeout=1.0)
        second = self.wait(timeout=5.0)
        self.harness.advance(1.0)
        failure_of(first, NoWorkerAvailable)
        self.add("a", 1)
        assert result_of(second).worker_id == "a"

    def test_cancel(self) -> None:
        """
        Cancelling a waiting call (its connection closed) fails it with
        L{CancelledError}, takes it out of the count and stops its timer.
        """
        d = self.wait()
        d.cancel()
        failure_of(d, CancelledError)
        assert self.store.stats().waiting == 0
        assert self.harness.timers() == []

    def test_cancel_takes_no_slot(self) -> None:
        """
        A cancelled call takes no slot freed later; the call behind it does.
        """
        first, second = self.wait(), self.wait()
        first.cancel()
        failure_of(first, CancelledError)
        self.add("a", 2)
        assert result_of(second).worker_id == "a"
        assert self.store.stats() == StoreStats(1, 1, 0, 1)
        assert self.free("a") == 1

    def test_cancel_answered_is_noop(self) -> None:
        """
        Cancelling an answered call changes nothing.
        """
        d = self.wait()
        self.add("a", 1)
        d.cancel()
        assert result_of(d).worker_id == "a"
        assert self.store.stats() == StoreStats(1, 0, 0, 1)

    def test_answered_stops_timer(self) -> None:
        """
        An answered call does not fail later when its timeout would have run
        out.
        """
        d = self.wait(timeout=1.0)
        self.add("a", 1)
        self.harness.advance(2.0)
        assert result_of(d).worker_id == "a"

    def test_waiting_counted_in_stats(self) -> None:
        """
        C{stats().waiting} counts the calls waiting in every pool.
        """
        self.wait("x")
        self.wait("x")
        self.wait("y")
        assert self.store.stats().waiting == 3
        self.add("a", 1, pool="x")
        assert self.store.stats().waiting == 2

    def test_no_timeout_while_others_wait(self) -> None:
        """
        A call without timeout while others wait fails at once and does not
        join the line.
        """
        self.wait()
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker()
        assert self.store.stats().waiting == 1

    def test_stop_fails_waiters(self) -> None:
        """
        C{stop} fails every waiting call with L{NoWorkerAvailable} and leaves
        no timer behind.
        """
        first = self.wait("x")
        second = self.wait("y")
        self.add("a", 1, ttl=5.0)
        self.store.stop()
        failure_of(first, NoWorkerAvailable)
        failure_of(second, NoWorkerAvailable)
        assert self.store.stats().waiting == 0
        assert self.harness.timers() == []


class MaxWaiting(StoreTests):
    """
    At most C{max_waiting} calls wait at once.
    """

    max_waiting = 2

    def test_overloaded(self) -> None:
        """
        One more waiting call than C{max_waiting} fails with L{Overloaded},
        whatever its pool, and is not counted.
        """
        self.wait("x")
        self.wait("y")
        with pytest.raises(Overloaded):
            self.store.next_worker("x", 1.0)
        with pytest.raises(Overloaded):
            self.store.next_worker("z", 1.0)
        assert self.store.stats().waiting == 2

    def test_overloaded_only_when_waiting(self) -> None:
        """
        A call with a free slot is answered even when C{max_waiting} calls
        wait (in another pool); a call without timeout gets
        L{NoWorkerAvailable}, not L{Overloaded}.
        """
        self.wait("x")
        self.wait("x")
        self.add("a", 1, pool="y")
        assert self.store.next_worker("y", 1.0) == Worker("a", "host-a", 7000)
        with pytest.raises(NoWorkerAvailable):
            self.store.next_worker("x")

    def test_room_again_after_answer(self) -> None:
        """
        Once a waiting call is answered, another may wait.
        """
        first = self.wait()
        self.wait()
        self.add("a", 1)
        result_of(first)
        assert_no_result(self.wait())
        assert self.store.stats().waiting == 2


A, B, C = "a", "b", "c"


class WaitingShare(StoreTests):
    """
    At most C{max_waiting_per_owner} calls of one owner wait at once.
    """

    max_waiting_per_owner = 2

    def test_overloaded(self) -> None:
        """
        One more waiting call of an owner than its share fails with
        L{Overloaded}, saying so; another owner's, and an owner-less one,
        still wait.
        """
        self.wait("x", owner=A)
        self.wait("y", owner=A)
        with pytest.raises(Overloaded, match="2 calls of this connection"):
            self.store.next_worker("x", 1.0, owner=A)
        assert_no_result(self.wait("x", owner=B))
        assert_no_result(self.wait("x"))
        assert self.store.stats().waiting == 4

    def test_share_freed_by_answer(self) -> None:
        """
        An answered call frees its place in the owner's share.
        """
        first = self.wait(owner=A)
        self.wait(owner=A)
        self.add("w", 1)
        result_of(first)
        assert_no_result(self.wait(owner=A))

    def test_share_freed_by_timeout_and_cancel(self) -> None:
        """
        A call that timed out or was cancelled frees its place too.
        """
        self.wait(owner=A, timeout=1.0).addErrback(lambda _: None)
        self.wait(owner=A, timeout=5.0).cancel()
        self.harness.advance(1.0)
        self.wait(owner=A)
        assert_no_result(self.wait(owner=A))


class WaitingShareAndTotal(StoreTests):
    """
    Shares within a total.
    """

    max_waiting = 3
    max_waiting_per_owner = 2

    def test_total_first(self) -> None:
        """
        The total limit holds whatever the shares.
        """
        for owner in (A, A, B):
            self.wait(owner=owner)
        with pytest.raises(Overloaded, match="3 calls are already waiting"):
            self.store.next_worker(None, 1.0, owner=C)


class Counters(StoreTests):
    """
    C{stats}.
    """

    def test_empty(self) -> None:
        """
        A new queue counts nothing.
        """
        assert self.store.stats() == StoreStats(0, 0, 0, 0)

    def test_counts(self) -> None:
        """
        C{stats} counts workers and free slots of every pool, and answers.
        """
        self.add("a", 3)
        self.add("b", 2, pool="x")
        self.add("c", 0)
        self.take()
        self.take("x")
        assert self.store.stats() == StoreStats(3, 3, 0, 2)

    def test_dispatched_counts_waiters_answered(self) -> None:
        """
        Answers to waiting calls count as dispatched.
        """
        self.wait()
        self.wait()
        self.add("a", 5)
        assert self.store.stats() == StoreStats(1, 3, 0, 2)

    def test_free_slots_follow_updates(self) -> None:
        """
        Free slots follow accepted updates, removals and pool moves.
        """
        self.add("a", 3)
        self.take()
        self.add("a", 1, pool="x")
        self.add("b", 4)
        assert self.store.stats().free_slots == 5
        self.store.gone("b")
        assert self.store.stats().free_slots == 1


class Figures(StoreTests):
    """
    C{pools}, C{removed} and C{available}: what metrics read.
    """

    def test_pools_named(self) -> None:
        """
        C{pools} gives each named pool's workers, free slots and waiting
        calls, in the order named, leaving out pools that do not exist.
        """
        self.add("a", 3)
        self.add("b", 2, pool="x")
        self.add("c", 0, pool="x")
        self.take()
        self.take("x")
        self.take("x")
        self.wait("x")
        assert self.store.pools(["x", "nothing", DEFAULT_POOL], 0) == [
            PoolFigures("x", 2, 0, 1),
            PoolFigures(DEFAULT_POOL, 1, 2, 0),
        ]

    def test_pools_more(self) -> None:
        """
        C{pools} adds up to C{more} pools that were not named.
        """
        for pool in ("p", "q", "r"):
            self.add(f"w-{pool}", 1, pool=pool)
        found = self.store.pools(["q"], 1)
        assert found[0] == PoolFigures("q", 1, 1, 0)
        assert len(found) == 2 and found[1].pool in ("p", "r")
        assert sorted(figures.pool for figures in self.store.pools([], 10)) == ["p", "q", "r"]

    def test_pools_forget_empty(self) -> None:
        """
        A pool whose last worker left and where no call waits is not given.
        """
        self.add("a", 1, pool="x")
        self.add("a", 1, pool="y")
        self.store.gone("a")
        assert self.store.pools(["x", "y"], 10) == []

    def test_pools_follow_moves(self) -> None:
        """
        A worker moving pools takes its free slots with it.
        """
        self.add("a", 3, pool="x")
        self.take("x")
        self.add("b", 1, pool="x")
        self.add("a", 4, pool="y")
        assert self.store.pools(["x", "y"], 0) == [
            PoolFigures("x", 1, 1, 0),
            PoolFigures("y", 1, 4, 0),
        ]

    def test_removed_by_reason(self) -> None:
        """
        C{removed} counts the workers removed, by reason.
        """
        assert self.harness.store.removed == {}
        self.add("a")
        self.store.gone("a")
        self.add("t", ttl=5.0)
        self.add("l", owner="s1")
        self.store.owner_lost("s1")
        self.harness.advance(self.lease_grace + 1.0)
        assert self.harness.store.removed == {"gone": 1, "ttl expired": 1, "lease expired": 1}

    def test_available(self) -> None:
        """
        A store that answers is available.
        """
        assert self.harness.store.available()


class Listing(StoreTests):
    """
    C{list_workers}.
    """

    def test_id_order(self) -> None:
        """
        Workers are listed in id order across pools.
        """
        self.add("c", 1, pool="x")
        self.add("a", 1, pool="y")
        self.add("d", 1)
        self.add("b", 1, pool="x")
        assert self.ids() == ["a", "b", "c", "d"]

    def test_empty(self) -> None:
        """
        An empty queue lists nothing.
        """
        assert self.ids() == []
        assert self.ids("x") == []

    def test_pool_filter(self) -> None:
        """
        Given a pool, only its workers are listed; an unknown pool lists none.
        """
        self.add("c", 1, pool="x")
        self.add("a", 1, pool="y")
        self.add("b", 1, pool="x")
        assert self.ids("x") == ["b", "c"]
        assert self.ids("nope") == []

    def test_after(self) -> None:
        """
        Given C{after}, only ids greater than it are listed (it need not be a
        registered id).
        """
        for worker_id in ["a", "b", "c", "d"]:
            self.add(worker_id, 1, pool="x" if worker_id in "ac" else None)
        assert self.ids(after="b") == ["c", "d"]
        assert self.ids(after="bb") == ["c", "d"]
        assert self.ids("x", after="a") == ["c"]
        assert self.ids(after="d") == []

    def test_fields(self) -> None:
        """
        Each worker is listed with host, port, pool, capacity, free slots and
        expires_in.
        """
        self.add("a", 3, pool="x", host="h", port=81)
        self.take("x")
        assert self.rows() == [RegisteredWorker("a", "h", 81, "x", 3, 2, -1.0)]

    def test_expires_in_nothing_pending(self) -> None:
        """
        C{expires_in} is -1 when no removal is pending.
        """
        self.add("a", 1, owner="s")
        assert self.info("a").expires_in == -1.0

    def test_expires_in_ttl(self) -> None:
        """
        C{expires_in} is the time left of the worker's ttl.
        """
        self.add("a", 1, ttl=10.0)
        self.harness.advance(2.5)
        assert self.info("a").expires_in == 7.5

    def test_expires_in_lease(self) -> None:
        """
        C{expires_in} is the time left of the worker's lease grace.
        """
        owner = "s"
        self.add("a", 1, owner=owner)
        self.store.owner_lost(owner)
        self.harness.advance(12.0)
        assert self.info("a").expires_in == 18.0


_SUITE: Tuple[Type[StoreTests], ...] = (
    Order,
    Seq,
    Gone,
    Lease,
    NoLeaseGrace,
    Ttl,
    Waiting,
    MaxWaiting,
    WaitingShare,
    WaitingShareAndTotal,
    Counters,
    Figures,
    Listing,
)


def make_store_tests(name: str, make_harness: MakeHarness) -> Dict[str, type]:
    """
    The conformance suite for one store: a test class per behaviour, named
    C{Test<name><behaviour>}, and the model test; put them in a test
    module's namespace (C{globals().update(...)}) for pytest to collect.
    """
    classes: Dict[str, type] = {}
    for suite in _SUITE:
        class_name = f"Test{name}{suite.__name__}"
        classes[class_name] = type(
            class_name, (suite,), {"make_harness": staticmethod(make_harness)}
        )
    model = make_model_tests(make_harness)
    classes[f"Test{name}Model"] = model
    return classes


__all__ = ["MakeHarness", "StoreTests", "make_store_tests"]
