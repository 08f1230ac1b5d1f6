"""
Tests for L{amp_dispatch._deadlines.DeadlineHeap}.
"""

from __future__ import annotations

from typing import List, Tuple

from twisted.internet.task import Clock

from amp_dispatch.store._deadlines import DeadlineHeap


class TestDeadlineHeap:
    """
    Many deadlines on one timer.
    """

    def setup_method(self) -> None:
        self.clock = Clock()
        self.due: List[str] = []
        self.heap: DeadlineHeap[str] = DeadlineHeap(self.clock, self.due.append)

    def test_not_due_before(self) -> None:
        """
        An item is not handed to C{due} before its deadline.
        """
        self.heap.add(5.0, "a")
        self.clock.advance(4.5)
        assert self.due == []

    def test_due_at_deadline(self) -> None:
        """
        An item is handed to C{due} once its deadline comes.
        """
        self.heap.add(5.0, "a")
        self.clock.advance(5.0)
        assert self.due == ["a"]
        assert len(self.heap) == 0

    def test_deadline_order(self) -> None:
        """
        Items whose deadlines come in the same step are handed over in
        deadline order, whatever the order they were added in.
        """
        self.heap.add(3.0, "c")
        self.heap.add(1.0, "a")
        self.heap.add(2.0, "b")
        self.clock.advance(10.0)
        assert self.due == ["a", "b", "c"]

    def test_equal_deadlines_in_adding_order(self) -> None:
        """
        Items with the same deadline are handed over in the order they were
        added.
        """
        for item in ["x", "a", "m"]:
            self.heap.add(2.0, item)
        self.clock.advance(2.0)
        assert self.due == ["x", "a", "m"]

    def test_stepwise(self) -> None:
        """
        Each item comes due at its own deadline, the later ones staying.
        """
        self.heap.add(1.0, "a")
        self.heap.add(2.0, "b")
        self.clock.advance(1.0)
        assert self.due == ["a"]
        assert len(self.heap) == 1
        self.clock.advance(1.0)
        assert self.due == ["a", "b"]

    def test_earlier_deadline_rearms(self) -> None:
        """
        A deadline earlier than every pending one moves the timer earlier.
        """
        self.heap.add(10.0, "late")
        self.heap.add(1.0, "early")
        self.clock.advance(1.0)
        assert self.due == ["early"]

    def test_one_timer(self) -> None:
        """
        However many deadlines are pending, one delayed call is set, for the
        earliest.
        """
        for i in range(50):
            self.heap.add(100.0 - i, f"i{i}")
        assert len(self.clock.getDelayedCalls()) == 1
        self.clock.advance(50.5)
        assert self.due == []
        self.clock.advance(0.5)
        assert self.due == ["i49"]

    def test_no_timer_when_empty(self) -> None:
        """
        Once every deadline has come, no delayed call is left.
        """
        self.heap.add(1.0, "a")
        self.heap.add(2.0, "b")
        self.clock.advance(3.0)
        assert self.clock.getDelayedCalls() == []

    def test_len_counts_every_entry(self) -> None:
        """
        C{len} counts entries, an item added twice counting twice (stale
        entries are kept until they come due or are compacted).
        """
        self.heap.add(1.0, "a")
        self.heap.add(2.0, "a")
        assert len(self.heap) == 2
        self.clock.advance(2.0)
        assert self.due == ["a", "a"]

    def test_compact_drops(self) -> None:
        """
        C{compact} drops the entries its predicate rejects, and only those;
        the dropped ones never come due.
        """
        self.heap.add(1.0, "drop")
        self.heap.add(2.0, "keep")
        self.heap.add(3.0, "drop")
        self.heap.compact(lambda deadline, item: item == "keep")
        assert len(self.heap) == 1
        self.clock.advance(5.0)
        assert self.due == ["keep"]

    def test_compact_passes_deadline(self) -> None:
        """
        C{compact} hands its predicate each entry's deadline with its item.
        """
        seen: List[Tuple[float, str]] = []
        self.heap.add(1.5, "a")
        self.heap.add(2.5, "b")

        def keep(deadline: float, item: str) -> bool:
            seen.append((deadline, item))
            return True

        self.heap.compact(keep)
        assert sorted(seen) == [(1.5, "a"), (2.5, "b")]

    def test_compact_rearms(self) -> None:
        """
        After C{compact} drops the earliest deadline, the timer is set for
        the earliest one left.
        """
        self.heap.add(1.0, "drop")
        self.heap.add(4.0, "keep")
        self.heap.compact(lambda deadline, item: item != "drop")
        assert len(self.clock.getDelayedCalls()) == 1
        self.clock.advance(3.5)
        assert self.due == []
        self.clock.advance(0.5)
        assert self.due == ["keep"]

    def test_compact_to_empty_cancels_timer(self) -> None:
        """
        When C{compact} drops everything, no delayed call is left.
        """
        self.heap.add(1.0, "a")
        self.heap.compact(lambda deadline, item: False)
        assert self.clock.getDelayedCalls() == []
        assert len(self.heap) == 0

    def test_stop(self) -> None:
        """
        After C{stop}, no delayed call is left and deadlines that come are not
        acted on.
        """
        self.heap.add(1.0, "a")
        self.heap.stop()
        assert self.clock.getDelayedCalls() == []
        self.clock.advance(2.0)
        assert self.due == []

    def test_add_during_due(self) -> None:
        """
        C{due} may add a deadline; it comes due in its turn.
        """

        def due(item: str) -> None:
            self.due.append(item)
            if item == "a":
                heap.add(self.clock.seconds() + 1.0, "again")

        heap: DeadlineHeap[str] = DeadlineHeap(self.clock, due)
        heap.add(1.0, "a")
        self.clock.advance(1.0)
        assert self.due == ["a"]
        self.clock.advance(1.0)
        assert self.due == ["a", "again"]
