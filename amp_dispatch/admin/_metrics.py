"""
The dispatcher's metrics, in Prometheus's data model: L{Metrics} is the
listeners' L{CommandHook} (it counts commands by outcome, rejected input by
kind, and how long waiting calls waited) and the collector that exposes
those counts with what the listeners and the store know (connections,
removals, and the store's figures, read into a L{Snapshot} before each
scrape, at most once a second: the shared store answers later).

Counting is a dict update per call of the hook, which the fast paths make
once per read.  Everything runs on the reactor's thread (see
L{amp_dispatch.admin._site}): nothing needs a lock.
"""

from __future__ import annotations

from collections import defaultdict
from typing import (
    Any,
    Callable,
    DefaultDict,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
)

from attrs import frozen
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from .._versions import PROTOCOL_VERSION, __version__, schema_version
from ..protocol._hooks import (
    ANSWERED,
    CANCELLED,
    INVALID,
    KNOWN,
    NO_WORKER,
    OVERLOADED,
    STORE_UNAVAILABLE,
    TIMED_OUT,
    UNKNOWN,
    ConnectionInfo,
)
from ..server._config import MAX_POOL_LABELS, OTHER_POOLS
from ..store._interface import (
    REMOVAL_REASONS,
    IWorkerStore,
    PoolFigures,
    StoreStats,
    UpdateOutcome,
)

_UPDATE_OUTCOMES = (UpdateOutcome.ACCEPTED, UpdateOutcome.STALE, UpdateOutcome.DUPLICATE)

__all__ = ["WAIT_BUCKETS", "ListenerCounts", "Metrics", "Snapshot"]

#: The outcomes each command's counter shows from the start (at 0), so
#: that a rate over them sees their first occurrence.
_OUTCOMES: Tuple[Tuple[bytes, Tuple[str, ...]], ...] = (
    (
        b"NextWorker",
        (ANSWERED, NO_WORKER, OVERLOADED, TIMED_OUT, CANCELLED, INVALID, STORE_UNAVAILABLE),
    ),
    (
        b"WorkerUpdate",
        (*(outcome.name for outcome in _UPDATE_OUTCOMES), INVALID, STORE_UNAVAILABLE),
    ),
    (b"WorkerGone", (KNOWN, UNKNOWN, INVALID, STORE_UNAVAILABLE)),
)

#: The waiting-time histogram's buckets, in seconds.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: The shortest time between two readings of the store (scrapes coming
#: faster share the last one): a scrape costs the shared store O(workers).
MIN_REFRESH = 1.0


def label(text: str) -> str:
    """
    An outcome, kind or reason as a label value: C{"no worker"} is
    C{no_worker}.
    """
    return text.replace(" ", "_")


@frozen
class ListenerCounts:
    """
    One listener's connection figures.

    @ivar role: C{"frontend"} or C{"scheduler"}.
    @ivar open: connections open now.
    @ivar refused: connections refused because the listener was full.
    @ivar evicted: idle connections closed to make room.
    """

    role: str
    open: int
    refused: int
    evicted: int


@frozen
class Snapshot:
    """
    The store's figures, as last read.

    @ivar stats: its totals; C{None} when it did not answer (it shows down).
    @ivar pools: the labelled pools' figures.
    @ivar other: the other pools' figures added up, past the label cap.
    """

    stats: Optional[StoreStats] = None
    pools: Sequence[PoolFigures] = ()
    other: Optional[PoolFigures] = None


class Metrics:
    """
    The listeners' hook and the dispatcher's metrics collector.

    @param clock: where time comes from (for L{MIN_REFRESH}).
    @param store: the store whose figures are shown.
    @param listeners: returns each listener's connection figures.
    @param max_pool_labels: the most pools labelled by name.
    """

    def __init__(
        self,
        clock: IReactorTime,
        store: IWorkerStore,
        listeners: Callable[[], Iterable[ListenerCounts]] = lambda: (),
        *,
        max_pool_labels: int = MAX_POOL_LABELS,
    ) -> None:
        self._clock = clock
        self._store = store
        self._listeners = listeners
        self._max_pool_labels = max_pool_labels
        self._commands: DefaultDict[Tuple[bytes, str], int] = defaultdict(int)
        for command, outcomes in _OUTCOMES:
            for outcome in outcomes:
                self._commands[command, outcome] = 0
        self._rejected: DefaultDict[Tuple[str, str], int] = defaultdict(int)
        # The pools labelled by name, in the order first seen.
        self._labelled: Dict[str, None] = {}
        self._refreshed_at: Optional[float] = None
        self._refreshing: Optional[Deferred[Snapshot]] = None
        self.snapshot = Snapshot()
        # Read once: the installed versions do not change while running.
        self._info = InfoMetricFamily("amp_dispatch", "The dispatcher's versions.")
        self._info.add_metric(
            [],
            {
                "version": __version__,
                "commands_version": schema_version(),
                "protocol": str(PROTOCOL_VERSION),
            },
        )
        self.registry = CollectorRegistry(auto_describe=True)
        self.waits = Histogram(
            "amp_dispatch_next_worker_wait_seconds",
            "How long NextWorker calls that found no free slot waited for their answer "
            "(a worker, or none at their timeout).",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # -- the hook (CommandHook) ----------------------------------------------

    def __call__(
        self, command: bytes, outcome: str, connection: ConnectionInfo, count: int
    ) -> None:
        self._commands[command, outcome] += count

    def rejected(self, role: str, kind: str) -> None:
        self._rejected[role, kind] += 1

    def waited(self, seconds: float) -> None:
        self.waits.observe(seconds)

    # -- reading, on the reactor's thread ------------------------------------

    def refresh(self) -> Deferred[Snapshot]:
        """
        Read the store's figures into L{snapshot}, unless
        read less than L{MIN_REFRESH} seconds ago (or being read now).
        Never fails: a store that does not answer is shown down, its
        figures left out.
        """
        if self._refreshing is not None:
            return self._refreshing
        now = self._clock.seconds()
        if self._refreshed_at is not None and now - self._refreshed_at < MIN_REFRESH:
            return succeed(self.snapshot)
        self._refreshed_at = now
        reading = self._read()
        if reading.called:
            return reading
        self._refreshing = reading

        def done(snapshot: Snapshot) -> Snapshot:
            self._refreshing = None
            return snapshot

        return reading.addCallback(done)

    def _read(self) -> Deferred[Snapshot]:
        store = self._store
        if not store.available():
            return succeed(self._keep(Snapshot()))
        names = list(self._labelled)
        # One more than there is room for: a pool named as the overflow
        # takes no label.
        room = self._max_pool_labels - len(names) + 1

        def figures(results: List[Any]) -> Snapshot:
            return self._keep(self._with_pools(*results))

        def failed(failure: Failure) -> Snapshot:
            return self._keep(Snapshot())

        reads: List[Deferred[Any]] = [
            maybeDeferred(store.stats),
            maybeDeferred(store.pools, names, room),
        ]
        return gatherResults(reads, consumeErrors=True).addCallbacks(figures, failed)

    def _with_pools(self, stats: StoreStats, pools: Sequence[PoolFigures]) -> Snapshot:
        # Pools keep their label while they exist; a gone pool's label goes
        # to a new pool.  A pool named as the overflow is counted in it.
        present = {figures.pool: figures for figures in pools if figures.pool != OTHER_POOLS}
        labelled = {pool: None for pool in self._labelled if pool in present}
        for pool in present:
            if len(labelled) >= self._max_pool_labels:
                break
            labelled.setdefault(pool, None)
        self._labelled = labelled
        shown = [present[pool] for pool in labelled]
        other = None
        if len(labelled) >= self._max_pool_labels or OTHER_POOLS in {f.pool for f in pools}:
            other = PoolFigures(
                OTHER_POOLS,
                max(0, stats.workers - sum(figures.workers for figures in shown)),
                max(0, stats.free_slots - sum(figures.free_slots for figures in shown)),
                max(0, stats.waiting - sum(figures.waiting for figures in shown)),
            )
        return Snapshot(stats, shown, other)

    def _keep(self, snapshot: Snapshot) -> Snapshot:
        self.snapshot = snapshot
        return snapshot

    # -- the collector ------------------------------------------------------

    def describe(self) -> List[Metric]:
        # The families without their figures: called while the dispatcher
        # is being built (its listeners are not there yet).
        return list(self._families(Snapshot(), (), {}))

    def collect(self) -> Iterator[Metric]:
        return self._families(self.snapshot, tuple(self._listeners()), self._store.removed)

    def _families(
        self,
        snapshot: Snapshot,
        listeners: Sequence[ListenerCounts],
        removals: Dict[str, int],
    ) -> Iterator[Metric]:
        yield self._info
        commands = CounterMetricFamily(
            "amp_dispatch_commands",
            "Commands handled, by command and outcome.",
            labels=["command", "outcome"],
        )
        for (command, outcome), count in sorted(self._commands.items()):
            commands.add_metric([command.decode("ascii"), label(outcome)], count)
        yield commands
        rejected = CounterMetricFamily(
            "amp_dispatch_rejected_inputs",
            "Inputs rejected (and logged), by listener and kind.",
            labels=["listener", "reason"],
        )
        for (role, kind), count in sorted(self._rejected.items()):
            rejected.add_metric([role, label(kind)], count)
        yield rejected
        removed = CounterMetricFamily(
            "amp_dispatch_workers_removed",
            "Workers this process removed, by reason (gone, ttl_expired, lease_expired).",
            labels=["reason"],
        )
        for reason in sorted({*REMOVAL_REASONS, *removals}):
            removed.add_metric([label(reason)], removals.get(reason, 0))
        yield removed
        yield from self._connections(listeners)
        up = GaugeMetricFamily(
            "amp_dispatch_store_up", "Whether the store answers (1) or not (0)."
        )
        up.add_metric([], 0.0 if snapshot.stats is None else 1.0)
        yield up
        if snapshot.stats is not None:
            yield from self._totals(snapshot.stats)
        yield from self._pools(snapshot)

    @staticmethod
    def _connections(listeners: Sequence[ListenerCounts]) -> Iterator[Metric]:
        families = (
            (GaugeMetricFamily, "amp_dispatch_connections", "Connections open, by listener.",
             "open"),
            (CounterMetricFamily, "amp_dispatch_connections_refused",
             "Connections refused because the listener was full.", "refused"),
            (CounterMetricFamily, "amp_dispatch_connections_evicted",
             "Idle connections closed to make room for a new one.", "evicted"),
        )
        for kind, name, documentation, attribute in families:
            family = kind(name, documentation, labels=["listener"])
            for listener in listeners:
                family.add_metric([listener.role], getattr(listener, attribute))
            yield family

    @staticmethod
    def _totals(stats: StoreStats) -> Iterator[Metric]:
        for name, documentation, value in (
            ("amp_dispatch_workers", "Registered workers, in every pool.", stats.workers),
            ("amp_dispatch_free_slots", "Free slots, in every pool.", stats.free_slots),
            ("amp_dispatch_waiting_calls", "NextWorker calls waiting, in every pool.",
             stats.waiting),
        ):
            yield GaugeMetricFamily(name, documentation, value=value)
        yield CounterMetricFamily(
            "amp_dispatch_dispatched",
            "NextWorker answers the store gave (every replica's, on a shared store).",
            value=stats.dispatched,
        )

    @staticmethod
    def _pools(snapshot: Snapshot) -> Iterator[Metric]:
        pools = list(snapshot.pools)
        if snapshot.other is not None:
            pools.append(snapshot.other)
        for name, documentation, attribute in (
            ("amp_dispatch_pool_workers", "Registered workers, by pool.", "workers"),
            ("amp_dispatch_pool_free_slots", "Free slots, by pool.", "free_slots"),
            ("amp_dispatch_pool_waiting_calls", "NextWorker calls waiting, by pool.", "waiting"),
        ):
            family = GaugeMetricFamily(name, documentation, labels=["pool"])
            for figures in pools:
                family.add_metric([figures.pool], getattr(figures, attribute))
            yield family

