"""
The in-memory store (L{MemoryStore}): the store conformance suite, and what
it adds (bounded heaps).
"""

from __future__ import annotations

from typing import cast

from amp_dispatch.store._memory import MemoryStore
from tests._store_suite import StoreTests, make_store_tests
from tests._stores import MemoryHarness

globals().update(make_store_tests("Memory", MemoryHarness))


class TestHeapBound(StoreTests):
    """
    Stale heap entries do not pile up.
    """

    make_harness = MemoryHarness

    @property
    def memory(self) -> MemoryStore:
        return cast(MemoryHarness, self.harness).memory

    def bound(self, pool: str) -> int:
        n = len(self.memory._pools[pool].ids)
        return 2 * n + 32 + 1

    def test_pool_heap_bounded(self) -> None:
        """
        Many updates and answers of the same few workers leave the pool's heap
        within twice its workers plus a constant.
        """
        for i in range(5000):
            self.add(f"w{i % 4}", 1 + i % 3)
            if i % 3 == 0:
                self.take()
            assert len(self.memory._pools["default"].heap) <= self.bound("default")

    def test_pool_heap_bounded_across_moves(self) -> None:
        """
        Workers moving between pools leave both heaps bounded.
        """
        for i in range(3000):
            self.add(f"w{i % 3}", 2, pool="x" if i % 2 else "y")
            self.add("stay-x", 1, pool="x")
            self.add("stay-y", 1, pool="y")
            for name in ["x", "y"]:
                assert len(self.memory._pools[name].heap) <= self.bound(name)

    def test_deadline_heap_bounded(self) -> None:
        """
        Many ttl renewals of the same few workers, as time goes by, leave the
        deadline heap within twice the workers plus a constant.
        """
        for i in range(5000):
            self.add(f"w{i % 4}", 1, ttl=5.0)
            self.harness.advance(0.001)
            assert len(self.memory._deadlines) <= 2 * 4 + 64 + 1

    def test_deadline_heap_bounded_same_instant(self) -> None:
        """
        Many ttl renewals of the same few workers at one instant (a burst of
        duplicates, or a coarse clock) leave the deadline heap bounded too.
        """
        for i in range(1000):
            self.add(f"w{i % 4}", 1, seq=1, ttl=5.0)
        assert len(self.memory._deadlines) <= 2 * 4 + 64 + 1
