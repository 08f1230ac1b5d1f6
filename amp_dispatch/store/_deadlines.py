"""
Many deadlines on one timer.

Workers' ttl and lease deadlines are kept in a heap, with a single
L{IDelayedCall} set for the earliest one, so expiry costs O(log n) per deadline
and never scans all workers.  Entries are never removed early: a renewed or
dropped deadline leaves a stale entry that the owner's check ignores when it
comes due.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Callable, Generic, List, Optional, Tuple, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

T = TypeVar("T")


class DeadlineHeap(Generic[T]):
    """
    Calls C{due(item)} for each item whose deadline has come, in deadline order.

    C{due} decides whether the deadline still stands (the heap keeps stale
    entries, see the module docstring).
    """

    def __init__(self, clock: IReactorTime, due: Callable[[T], None]) -> None:
        self._clock = clock
        self._due = due
        self._heap: List[Tuple[float, int, T]] = []
        self._counter = count()
        self._timer: Optional[IDelayedCall] = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, item: T) -> None:
        heapq.heappush(self._heap, (deadline, next(self._counter), item))
        if self._timer is None or deadline < self._timer_at:
            self._arm()

    def compact(self, keep: Callable[[float, T], bool]) -> None:
        """
        Drop the entries for which C{keep(deadline, item)} is false.
        """
        self._heap = [entry for entry in self._heap if keep(entry[0], entry[2])]
        heapq.heapify(self._heap)
        self._arm()

    def stop(self) -> None:
        """
        Cancel the timer; deadlines that come due later are not acted on.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm(self) -> None:
        self.stop()
        if self._heap:
            self._timer_at = self._heap[0][0]
            delay = max(0.0, self._timer_at - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, item = heapq.heappop(heap)
            self._due(item)
        self._arm()
