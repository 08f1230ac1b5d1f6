"""
What C{amp-dispatch top} shows, as plain records: the figures of one frame
and how they are worked out from the dispatcher's answers (C{Stats}, pages
of C{ListWorkers}), without any terminal.

C{Stats} counts the dispatcher as a whole, so the totals (workers, free
slots, waiting calls, answers per second) are exact; a pool's figures are
added up from the C{ListWorkers} rows that were read, which may be only the
first of many workers (L{Frame.truncated}).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from attrs import frozen

from ..client import DispatcherStats, RegisteredWorker

#: The connection's states: answering, and failing since it last answered
#: (the client reconnects meanwhile).
CONNECTED = "connected"
RECONNECTING = "reconnecting"


def in_use(worker: RegisteredWorker) -> int:
    """
    The answers handed out for C{worker} since its last update: the load
    the dispatcher assumes it has (its capacity less its free slots).
    """
    return worker.capacity - worker.free


@frozen
class PoolFigures:
    """
    One pool, added up from the workers read.

    @ivar capacity: the free slots their last updates gave.
    @ivar free: their free slots now.
    """

    pool: str
    workers: int
    capacity: int
    free: int

    @property
    def in_use(self) -> int:
        """
        The answers handed out for its workers since their last updates.
        """
        return self.capacity - self.free


def pool_figures(workers: Sequence[RegisteredWorker]) -> List[PoolFigures]:
    """
    The figures of each pool of C{workers}, in pool name order.
    """
    pools: Dict[str, List[int]] = {}
    for worker in workers:
        figures = pools.setdefault(worker.pool, [0, 0, 0])
        figures[0] += 1
        figures[1] += worker.capacity
        figures[2] += worker.free
    return [PoolFigures(pool, *pools[pool]) for pool in sorted(pools)]


def _busyness(worker: RegisteredWorker) -> tuple[int, float, str]:
    # A full worker (capacity 0) is as busy as can be: no slot left.
    share_free = worker.free / worker.capacity if worker.capacity else 0.0
    return (-in_use(worker), share_free, worker.worker_id)


def busiest(workers: Sequence[RegisteredWorker], count: int) -> List[RegisteredWorker]:
    """
    The C{count} busiest of C{workers}: the most answers handed out since
    their last update first, then the smallest share of their capacity
    still free, then by id.
    """
    return sorted(workers, key=_busyness)[:count]


def answers_per_second(
    before: Optional[DispatcherStats],
    before_time: float,
    now: DispatcherStats,
    now_time: float,
) -> Optional[float]:
    """
    C{NextWorker} answers per second between two C{Stats} answers, from the
    difference of their C{dispatched} counters; C{None} without an earlier
    answer, or when the counter went back (the dispatcher restarted).
    """
    if before is None or now_time <= before_time or now.dispatched < before.dispatched:
        return None
    return (now.dispatched - before.dispatched) / (now_time - before_time)


@frozen
class Connection:
    """
    The connection to the scheduler listener.

    @ivar state: L{CONNECTED} or L{RECONNECTING}.
    @ivar endpoint: where it is connected, or where it tries to connect.
    @ivar error: why the last refresh failed, while L{RECONNECTING}.
    @ivar figures_age: seconds since the figures shown were read, while
        L{RECONNECTING}.
    """

    state: str
    endpoint: str
    error: Optional[str] = None
    figures_age: Optional[float] = None


@frozen
class Frame:
    """
    One refresh of the view.

    @ivar stats: the dispatcher's totals.
    @ivar rate: C{NextWorker} answers per second of the whole dispatcher
        since the previous refresh (C{None}: not known yet).
    @ivar pools: the figures of each pool, from the workers read.
    @ivar busiest: the busiest of the workers read.
    @ivar workers_read: how many workers were read.
    @ivar truncated: more workers are registered than were read.
    @ivar interval: seconds between refreshes.
    """

    connection: Connection
    stats: DispatcherStats
    rate: Optional[float] = None
    pools: Sequence[PoolFigures] = ()
    busiest: Sequence[RegisteredWorker] = ()
    workers_read: int = 0
    truncated: bool = False
    interval: float = 1.0


__all__ = [
    "CONNECTED",
    "RECONNECTING",
    "Connection",
    "Frame",
    "PoolFigures",
    "answers_per_second",
    "busiest",
    "in_use",
    "pool_figures",
]
