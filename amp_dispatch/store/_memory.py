"""
The in-memory store (L{IWorkerStore}): the most-able-worker queue as pure
logic, no I/O, time from an injected clock, every answer at once.

Each pool keeps its workers that have a free slot in a heap ordered by
C{(-free, order)}: most free slots first, then round robin among equals.
C{order} is the tick of the worker's last answer, or, for a worker never
answered since it entered the pool, its entering tick shifted below every
answer tick (so it goes first, and among those the earliest to enter).  Both
are packed in one integer key, C{order - free * 2**63}, so the heap compares
plain ints; the pool maps each live key to its worker.  A change of a
worker's key pushes the new key and forgets the old one, which stays in the
heap, stale, until it reaches the head or the heap is compacted (when stale
keys outnumber live ones).  So C{update}, C{gone} and C{next_worker} cost
O(log n) amortized, whatever the number of workers.
"""

from __future__ import annotations

import heapq
from itertools import count, islice
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

from amp_dispatch_commands import DEFAULT_POOL, NoWorkerAvailable, Overloaded
from attrs import define, field
from sortedcontainers import SortedList
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from .._log import get_logger
from .._records import RegisteredWorker, Worker
from ._deadlines import DeadlineHeap
from ._interface import (
    IWorkerStore,
    Owner,
    PoolFigures,
    StoreStats,
    UpdateOutcome,
    WorkerReport,
    WorkerRows,
)

_log = get_logger("amp_dispatch.store")

#: Added to entering ticks so that never-answered workers sort before answered ones.
_NEVER_ANSWERED = -(1 << 62)


def no_free_slot(pool_name: str) -> NoWorkerAvailable:
    """
    The error of a C{NextWorker} that found no free slot in C{pool_name}.
    """
    return NoWorkerAvailable(f"no worker of pool {pool_name!r} has a free slot")


#: Keys are C{order - free * _FREE}: C{|order|} < 2**62 < C{_FREE}.
_FREE = 1 << 63


@define(eq=False)
class _Worker:
    worker_id: str
    host: str
    port: int
    pool: _Pool
    capacity: int
    order: int
    assigned: int = 0
    seq: Optional[int] = None
    ttl: Optional[float] = None
    ttl_deadline: Optional[float] = None
    lease_deadline: Optional[float] = None
    # When the worker's earliest entry in the deadline heap comes due.
    expiry_at: Optional[float] = None
    owner: Optional[Owner] = None
    # The worker's live key in its pool's heap (None: not queued, no free slot).
    key: Optional[int] = None
    # What a NextWorker answers for it, made when first answered and anew
    # after its address changes (see MemoryStore's record).
    record: Optional[Worker] = None

    @property
    def free(self) -> int:
        return self.capacity - self.assigned

    def deadline(self) -> Optional[float]:
        if self.ttl_deadline is None:
            return self.lease_deadline
        if self.lease_deadline is None:
            return self.ttl_deadline
        return min(self.ttl_deadline, self.lease_deadline)


@define(eq=False)
class _Waiter:
    deferred: Deferred[Worker]
    owner: Optional[Owner] = None
    timer: Optional[IDelayedCall] = None


@define(eq=False)
class _Pool:
    name: str
    heap: List[int] = field(factory=list)
    # The live keys of the heap and their workers.
    queued: Dict[int, _Worker] = field(factory=dict)
    ids: SortedList = field(factory=SortedList)
    # Insertion-ordered set: first come first served, O(1) removal.
    waiters: Dict[_Waiter, None] = field(factory=dict)
    # Its workers' free slots added up.
    free: int = 0


@implementer(IWorkerStore)
class MemoryStore:
    """
    The state of a dispatcher in its own memory: workers by pool, waiting
    calls, leases (L{IWorkerStore}, every answer at once).

    @param clock: where time comes from (the reactor, or a L{Clock} in tests).
    @param lease_grace: seconds a worker outlives the loss of its scheduler
        connection (0: removed at once).
    @param max_waiting: the most C{NextWorker} calls that may wait at once.
    @param max_waiting_per_owner: the most of them one owner (a front-end
        connection) may make.
    @param record: makes the L{Worker} a worker is answered as, from its id,
        host and port: once, when it is first answered, and again after its
        address changes (a caller may give a L{Worker} subclass that keeps
        what it derives from one, such as its encoded answer).
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        lease_grace: float,
        max_waiting: int,
        max_waiting_per_owner: int,
        record: Callable[[str, str, int], Worker] = Worker,
    ) -> None:
        self._clock = clock
        self._record = record
        self.lease_grace = lease_grace
        self.max_waiting = max_waiting
        self.max_waiting_per_owner = max_waiting_per_owner
        # Waiting calls by owner (owners with none are not kept).
        self._waiting_by: Dict[Owner, int] = {}
        self._workers: Dict[str, _Worker] = {}
        self._pools: Dict[str, _Pool] = {}
        # Each owner's workers, as insertion-ordered sets (removals in a stable order).
        self._owned: Dict[Owner, Dict[_Worker, None]] = {}
        self._deadlines: DeadlineHeap[_Worker] = DeadlineHeap(clock, self._deadline_due)
        self._ticks = count()
        self._free_slots = 0
        self._waiting = 0
        self._dispatched = 0
        #: Workers removed, by reason (see L{IWorkerStore.removed}).
        self.removed: Dict[str, int] = {}

    # -- the scheduler's side -------------------------------------------------

    def update(self, report: WorkerReport, owner: Optional[Owner] = None) -> UpdateOutcome:
        """
        Apply a C{WorkerUpdate} sent by C{owner} (see L{IWorkerStore.update}).
        """
        worker_id, host, port, capacity, pool, seq, ttl = report
        pool_name = pool or DEFAULT_POOL
        worker = self._workers.get(worker_id)
        if worker is not None and seq is not None and worker.seq is not None:
            if seq < worker.seq:
                _log.debug("update stale", worker_id=worker_id, seq=seq, last_seq=worker.seq)
                return UpdateOutcome.STALE
            if seq == worker.seq:
                self._renew(worker, owner)
                _log.debug("update duplicate", worker_id=worker_id, seq=seq)
                return UpdateOutcome.DUPLICATE
        if worker is None:
            worker = self._enter(worker_id, host, port, capacity, pool_name)
            _log.info(
                "worker registered",
                worker_id=worker_id,
                host=host,
                port=port,
                pool=pool_name,
                capacity=capacity,
            )
        else:
            if worker.pool.name != pool_name:
                _log.info(
                    "worker moved", worker_id=worker_id, from_pool=worker.pool.name, pool=pool_name
                )
                worker.pool.free -= worker.free
                self._leave_pool(worker)
                worker.pool = self._pool(pool_name)
                worker.pool.ids.add(worker_id)
                worker.pool.free += worker.free
                worker.order = _NEVER_ANSWERED + next(self._ticks)
            else:
                _log.debug("worker updated", worker_id=worker_id, capacity=capacity)
            self._free_slots -= worker.free
            worker.pool.free += capacity - worker.free
            if host != worker.host or port != worker.port:
                worker.host = host
                worker.port = port
                worker.record = None
            worker.capacity = capacity
            worker.assigned = 0
            self._free_slots += capacity
        worker.seq = seq
        worker.ttl = ttl if ttl else None
        self._renew(worker, owner)
        self._requeue(worker)
        if worker.pool.waiters and capacity > 0:
            self._serve_waiters(worker.pool)
        return UpdateOutcome.ACCEPTED

    def gone(self, worker_id: str) -> bool:
        """
        Remove a worker at once; return whether it was registered.
        """
        worker = self._workers.get(worker_id)
        if worker is None:
            return False
        self._remove(worker, "gone")
        return True

    def owner_lost(self, owner: Owner) -> None:
        """
        C{owner}'s connection closed: its workers go after the lease grace,
        unless another connection sends an update for them first.
        """
        workers = self._owned.pop(owner, {})
        if not workers:
            return
        _log.info("lease grace started", workers=len(workers), grace=self.lease_grace)
        deadline = self._clock.seconds() + self.lease_grace
        for worker in workers:
            worker.owner = None
            if self.lease_grace <= 0:
                self._remove(worker, "lease expired")
            else:
                worker.lease_deadline = deadline
                self._schedule_expiry(worker)

    def holds(self, owner: Owner) -> bool:
        """
        Whether workers belong to C{owner}.
        """
        return bool(self._owned.get(owner))

    # -- the front end's side -------------------------------------------------

    def next_worker(
        self,
        pool: Optional[str] = None,
        timeout: Optional[float] = None,
        owner: Optional[Owner] = None,
    ) -> Union[Worker, Deferred[Worker]]:
        """
        Take a slot of the head of C{pool}'s queue (see
        L{IWorkerStore.next_worker}).

        @return: the L{Worker} at once when a slot is free; else, with a
            C{timeout} > 0, a L{Deferred} that fires with one when an update
            frees a slot, fails with L{NoWorkerAvailable} when the timeout runs
            out, and gives up its place in line when cancelled.
        @raise NoWorkerAvailable: no free slot and no C{timeout}.
        @raise Overloaded: no free slot and C{max_waiting} calls already wait,
            or C{max_waiting_per_owner} of C{owner}'s.
        """
        pool_name = pool or DEFAULT_POOL
        worker = self.take(pool_name)
        if worker is not None:
            return worker
        if not timeout:
            raise no_free_slot(pool_name)
        if self._waiting >= self.max_waiting:
            raise Overloaded(f"{self.max_waiting} calls are already waiting")
        if owner is not None and self._waiting_by.get(owner, 0) >= self.max_waiting_per_owner:
            raise Overloaded(
                f"{self.max_waiting_per_owner} calls of this connection are already waiting"
            )
        return self._wait(self._pool(pool_name), timeout, owner)

    def take(self, pool: str) -> Optional[Worker]:
        """
        Take a slot of the head of C{pool}'s queue, if it has a free one and
        no call waits for one (L{next_worker} that never waits).
        """
        target = self._pools.get(pool)
        if target is None or target.waiters:
            return None
        return self._take(target)

    # -- reading --------------------------------------------------------------

    def stats(self) -> StoreStats:
        """
        The store's counters.
        """
        return StoreStats(
            workers=len(self._workers),
            free_slots=self._free_slots,
            waiting=self._waiting,
            dispatched=self._dispatched,
        )

    def pools(self, names: Sequence[str], more: int) -> List[PoolFigures]:
        """
        The figures of the pools C{names} that exist, then of up to C{more}
        others.
        """
        found = [self._figures(target) for target in map(self._pools.get, names) if target]
        if more > 0:
            named = set(names)
            others = (target for target in self._pools.values() if target.name not in named)
            found += map(self._figures, islice(others, more))
        return found

    @staticmethod
    def _figures(target: _Pool) -> PoolFigures:
        return PoolFigures(target.name, len(target.ids), target.free, len(target.waiters))

    def available(self) -> bool:
        """
        Always: the store is this process's memory.
        """
        return True

    def list_workers(self, pool: Optional[str], after: Optional[str], limit: int) -> WorkerRows:
        """
        Up to C{limit} workers of C{pool} (of every pool when C{None}) whose
        id is greater than C{after}, in id order.
        """
        rows = list(islice(self._registered(pool, after), limit + 1))
        return WorkerRows(rows[:limit], len(rows) > limit)

    def _registered(self, pool: Optional[str], after: Optional[str]) -> Iterator[RegisteredWorker]:
        """
        The workers of L{list_workers}, lazily and without a limit.
        """
        if pool is None:
            pools = list(self._pools.values())
        else:
            pools = [self._pools[pool]] if pool in self._pools else []
        ranges = [p.ids.irange(minimum=after, inclusive=(after is None, True)) for p in pools]
        ids: Iterator[str] = ranges[0] if len(ranges) == 1 else heapq.merge(*ranges)
        now = self._clock.seconds()
        for worker_id in ids:
            worker = self._workers[worker_id]
            deadline = worker.deadline()
            yield RegisteredWorker(
                worker_id=worker_id,
                host=worker.host,
                port=worker.port,
                pool=worker.pool.name,
                capacity=worker.capacity,
                free=worker.free,
                expires_in=-1.0 if deadline is None else max(0.0, deadline - now),
            )

    def start(self) -> None:
        """
        Nothing runs in the background until workers have deadlines.
        """

    def stop(self) -> None:
        """
        Stop the expiry timer and fail every waiting call (shutting down).
        """
        self._deadlines.stop()
        for target in list(self._pools.values()):
            for waiter in list(target.waiters):
                self._end_wait(target, waiter)
                waiter.deferred.errback(NoWorkerAvailable("the dispatcher is shutting down"))

    # -- internals ------------------------------------------------------------

    def _pool(self, name: str) -> _Pool:
        target = self._pools.get(name)
        if target is None:
            target = self._pools[name] = _Pool(name)
        return target

    def _enter(
        self, worker_id: str, host: str, port: int, capacity: int, pool_name: str
    ) -> _Worker:
        target = self._pool(pool_name)
        worker = _Worker(
            worker_id=worker_id,
            host=host,
            port=port,
            pool=target,
            capacity=capacity,
            order=_NEVER_ANSWERED + next(self._ticks),
        )
        self._workers[worker_id] = worker
        target.ids.add(worker_id)
        target.free += capacity
        self._free_slots += capacity
        return worker

    def _renew(self, worker: _Worker, owner: Optional[Owner]) -> None:
        """
        An accepted or duplicate update: C{owner} holds the worker now, and its
        ttl starts again.
        """
        if worker.owner != owner:
            if worker.owner is not None:
                self._owned[worker.owner].pop(worker, None)
            worker.owner = owner
        if owner is not None:
            self._owned.setdefault(owner, {})[worker] = None
        worker.lease_deadline = None
        if worker.ttl is None:
            worker.ttl_deadline = None
        else:
            worker.ttl_deadline = self._clock.seconds() + worker.ttl
        self._schedule_expiry(worker)

    def _schedule_expiry(self, worker: _Worker) -> None:
        """
        Make sure the deadline heap holds an entry at or before the worker's
        earliest deadline.  A later deadline (a renewal) adds no entry: the
        earlier one, when due, finds the deadline moved and schedules it anew.
        """
        deadline = worker.deadline()
        if deadline is None or (worker.expiry_at is not None and worker.expiry_at <= deadline):
            return
        worker.expiry_at = deadline
        self._deadlines.add(deadline, worker)
        if len(self._deadlines) > 2 * len(self._workers) + 64:
            self._deadlines.compact(self._deadline_stands)

    def _deadline_stands(self, deadline: float, worker: _Worker) -> bool:
        return self._workers.get(worker.worker_id) is worker and deadline == worker.expiry_at

    def _deadline_due(self, worker: _Worker) -> None:
        if self._workers.get(worker.worker_id) is not worker:
            return
        now = self._clock.seconds()
        if worker.expiry_at is None or worker.expiry_at > now:
            return  # an entry superseded by an earlier one, handled already
        worker.expiry_at = None
        if worker.ttl_deadline is not None and worker.ttl_deadline <= now:
            self._remove(worker, "ttl expired")
        elif worker.lease_deadline is not None and worker.lease_deadline <= now:
            self._remove(worker, "lease expired")
        else:
            self._schedule_expiry(worker)

    def _requeue(self, worker: _Worker) -> None:
        """
        Put the worker's current key in its pool's heap (or none when full).
        """
        target = worker.pool
        if worker.key is not None:
            del target.queued[worker.key]
            worker.key = None
        free = worker.capacity - worker.assigned
        if free <= 0:
            return
        key = worker.key = worker.order - free * _FREE
        target.queued[key] = worker
        heap = target.heap
        heapq.heappush(heap, key)
        if len(heap) > 2 * len(target.queued) + 32:
            heap[:] = target.queued
            heapq.heapify(heap)

    def _take(self, target: _Pool) -> Optional[Worker]:
        heap = target.heap
        queued = target.queued
        while heap:
            worker = queued.pop(heap[0], None)
            if worker is None:
                heapq.heappop(heap)  # stale
                continue
            worker.assigned += 1
            order = worker.order = next(self._ticks)
            self._free_slots -= 1
            target.free -= 1
            self._dispatched += 1
            free = worker.capacity - worker.assigned
            if free > 0:
                key = worker.key = order - free * _FREE
                queued[key] = worker
                heapq.heapreplace(heap, key)
            else:
                worker.key = None
                heapq.heappop(heap)
            record = worker.record
            if record is None:
                record = worker.record = self._record(worker.worker_id, worker.host, worker.port)
            return record
        return None

    def _leave_pool(self, worker: _Worker) -> None:
        target = worker.pool
        if worker.key is not None:
            del target.queued[worker.key]
            worker.key = None
        target.ids.remove(worker.worker_id)
        if not target.ids and not target.waiters:
            del self._pools[target.name]

    def _remove(self, worker: _Worker, reason: str) -> None:
        del self._workers[worker.worker_id]
        worker.pool.free -= worker.free
        self._leave_pool(worker)
        self._free_slots -= worker.free
        self.removed[reason] = self.removed.get(reason, 0) + 1
        if worker.owner is not None:
            self._owned[worker.owner].pop(worker, None)
        _log.info(
            "worker removed", worker_id=worker.worker_id, pool=worker.pool.name, reason=reason
        )

    def _wait(self, target: _Pool, timeout: float, owner: Optional[Owner]) -> Deferred[Worker]:
        def cancel(_: Deferred[Worker]) -> None:
            self._end_wait(target, waiter)

        waiter = _Waiter(Deferred(cancel), owner)
        waiter.timer = self._clock.callLater(timeout, self._wait_timed_out, target, waiter)
        target.waiters[waiter] = None
        self._waiting += 1
        if owner is not None:
            self._waiting_by[owner] = self._waiting_by.get(owner, 0) + 1
        return waiter.deferred

    def _wait_timed_out(self, target: _Pool, waiter: _Waiter) -> None:
        waiter.timer = None
        self._end_wait(target, waiter)
        waiter.deferred.errback(
            NoWorkerAvailable(f"no worker of pool {target.name!r} had a free slot in time")
        )

    def _end_wait(self, target: _Pool, waiter: _Waiter) -> None:
        if waiter in target.waiters:
            del target.waiters[waiter]
            self._waiting -= 1
            owner = waiter.owner
            if owner is not None:
                left = self._waiting_by[owner] - 1
                if left:
                    self._waiting_by[owner] = left
                else:
                    del self._waiting_by[owner]
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if not target.waiters and not target.ids:
            self._pools.pop(target.name, None)

    def _serve_waiters(self, target: _Pool) -> None:
        waiters = target.waiters
        while waiters:
            worker = self._take(target)
            if worker is None:
                return
            waiter = next(iter(waiters))
            self._end_wait(target, waiter)
            waiter.deferred.callback(worker)


__all__ = ["MemoryStore", "no_free_slot"]
