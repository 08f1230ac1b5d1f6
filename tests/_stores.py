"""
Stores under test: a harness per L{IWorkerStore} implementation (the store,
its clock, how to await its answers), and L{LaterStore}, a store whose every
answer comes as a L{Deferred}, as a store in another process answers.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from amp_dispatch._records import Worker
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import (
    IWorkerStore,
    Owner,
    PoolFigures,
    StoreStats,
    UpdateOutcome,
    WorkerReport,
    WorkerRows,
)
from amp_dispatch.store._memory import MemoryStore

T = TypeVar("T")


def resolved(result: Any) -> Any:
    """
    A store's answer: itself, or what its L{Deferred} has fired with (it
    must have fired; a failure is raised).
    """
    if not isinstance(result, Deferred):
        return result
    outcome: List[Any] = []
    result.addBoth(outcome.append)
    assert outcome, "the store has not answered"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


class StoreHarness:
    """
    One store under test, on a L{Clock}.

    @ivar store: the store.
    @ivar clock: its time.
    """

    store: IWorkerStore

    def __init__(self, config: DispatcherConfig) -> None:
        self.clock = Clock()
        self.config = config

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} go by for the store.
        """
        self.clock.advance(seconds)

    def resolve(self, result: Any) -> Any:
        """
        The value of a store's answer (see L{resolved}).
        """
        return resolved(result)

    def timers(self) -> List[IDelayedCall]:
        """
        The store's timers still pending.
        """
        return list(self.clock.getDelayedCalls())

    def close(self) -> None:
        """
        Let go of what the store holds outside the process (connections).
        """

    def settle(self) -> None:
        """
        Let the store take in the calls made so far (a store in another
        process has them only once sent and answered; the memory store at
        once).
        """

    def check(self) -> None:
        """
        What must hold of the store's own state after every step (nothing
        unless the store says).
        """


class MemoryHarness(StoreHarness):
    """
    The in-memory store.
    """

    def __init__(self, config: DispatcherConfig) -> None:
        super().__init__(config)
        self.memory = open_memory_store(self.clock, config)
        self.store = self.memory

    def check(self) -> None:
        heap_bounded(self.memory)


def heap_bounded(store: MemoryStore) -> None:
    """
    Stale heap entries of the memory store never outnumber its workers
    twice, plus a constant.
    """
    for target in store._pools.values():
        assert len(target.heap) <= 2 * len(target.ids) + 32 + 1


@implementer(IWorkerStore)
class LaterStore:
    """
    The memory store behind an interface that answers every call with a
    L{Deferred} (fired by the time it is returned, unless the call waits),
    as a store in another process answers.
    """

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def _later(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        try:
            result = call(*args, **kwargs)
        except Exception:
            return fail()
        return result if isinstance(result, Deferred) else succeed(result)

    def update(
        self, report: WorkerReport, owner: Optional[Owner] = None
    ) -> Deferred[UpdateOutcome]:
        return self._later(self._store.update, report, owner)

    def gone(self, worker_id: str) -> Deferred[bool]:
        return self._later(self._store.gone, worker_id)

    def take(self, pool: str) -> Deferred[Optional[Worker]]:
        return self._later(self._store.take, pool)

    def next_worker(
        self,
        pool: Optional[str] = None,
        timeout: Optional[float] = None,
        owner: Optional[Owner] = None,
    ) -> Deferred[Worker]:
        return self._later(self._store.next_worker, pool, timeout, owner)

    def list_workers(
        self, pool: Optional[str], after: Optional[str], limit: int
    ) -> Deferred[WorkerRows]:
        return self._later(self._store.list_workers, pool, after, limit)

    def stats(self) -> Deferred[StoreStats]:
        return self._later(self._store.stats)

    def pools(self, names: Sequence[str], more: int) -> Deferred[List[PoolFigures]]:
        return self._later(self._store.pools, names, more)

    @property
    def removed(self) -> Dict[str, int]:
        return self._store.removed

    def available(self) -> bool:
        return self._store.available()

    def owner_lost(self, owner: Owner) -> Deferred[None]:
        return self._later(self._store.owner_lost, owner)

    def holds(self, owner: Owner) -> bool:
        return self._store.holds(owner)

    def start(self) -> None:
        self._store.start()

    def stop(self) -> Deferred[None]:
        return self._later(self._store.stop)


class LaterHarness(MemoryHarness):
    """
    The memory store answering through L{LaterStore}.
    """

    def __init__(self, config: DispatcherConfig) -> None:
        super().__init__(config)
        self.store = LaterStore(self.memory)
