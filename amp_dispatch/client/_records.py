"""
The records client calls fire with, besides the workers themselves
(L{amp_dispatch._records.Worker}, L{RegisteredWorker}): the dispatcher's
counters and a page of the worker list.
"""

from __future__ import annotations

from typing import List, Optional

from attrs import frozen

from .._records import RegisteredWorker


@frozen
class DispatcherStats:
    """
    A C{Stats} answer: counters of the dispatcher as a whole.

    @ivar workers: registered workers.
    @ivar free_slots: their free slots added up.
    @ivar waiting: C{NextWorker} calls waiting for a slot.
    @ivar dispatched: C{NextWorker} answers since the dispatcher started.
    @ivar protocol: the dispatcher's protocol version.
    """

    workers: int
    free_slots: int
    waiting: int
    dispatched: int
    protocol: int


@frozen
class WorkerPage:
    """
    One C{ListWorkers} page, in C{worker_id} order.

    @ivar next_after: when more workers follow, pass it as C{after} for the
        next page; C{None} on the last page.
    """

    workers: List[RegisteredWorker]
    next_after: Optional[str]


__all__ = ["DispatcherStats", "WorkerPage"]
