"""
The store interface: what the listeners' protocols ask of the place the
workers live, and the values they get back.

A store may answer at once (the in-memory store does, so the fast paths keep
their speed) or later: every method but L{IWorkerStore.holds} may return a
L{Deferred} of its result instead, as a store in another process must (see
L{Result}).  The listeners' protocols take both: an answer that comes later
is written when it comes.  A store that cannot answer fails the call's
Deferred with C{StoreUnavailable} (declared by every command); only
C{next_worker} raises its declared errors at once.
"""

from __future__ import annotations

from typing import (
    Callable,
    ClassVar,
    Hashable,
    List,
    NamedTuple,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

from attrs import frozen
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from .._records import RegisteredWorker, Worker

T = TypeVar("T")
U = TypeVar("U")

#: A store's answer: the value now, or a L{Deferred} of it.
Result = Union[T, "Deferred[T]"]


def then(result: Result[T], use: Callable[[T], U]) -> Result[U]:
    """
    C{use(value)} of a store's answer: at once if it came at once, else when
    it comes.
    """
    if isinstance(result, Deferred):
        return result.addCallback(use)
    return use(result)


#: Who sent a worker's updates: a plain value naming a scheduler connection
#: (the listeners use an C{int} unique within the process).
Owner = Hashable


class WorkerReport(NamedTuple):
    """
    What a C{WorkerUpdate} says of a worker: its address, its free slots
    now, its pool (C{None}: the default pool), the update's C{seq} and the
    worker's C{ttl} (both C{None} when not given).  The fields are the
    command's arguments, in the schema's order.
    """

    worker_id: str
    host: str
    port: int
    capacity: int
    pool: Optional[str] = None
    seq: Optional[int] = None
    ttl: Optional[float] = None


@frozen
class UpdateOutcome:
    """
    What became of a C{WorkerUpdate}: L{ACCEPTED} (applied: the worker has
    the update's address and free slots now), L{STALE} (refused: its C{seq}
    is lower than the last accepted one) or L{DUPLICATE} (refused: its
    C{seq} equals the last accepted one; the lease and ttl are renewed,
    nothing else).  Compare by identity: there are only these three.

    @ivar name: the outcome's name, for hooks and logs.
    @ivar accepted: the C{accepted} of the update's answer.
    """

    name: str
    accepted: bool

    ACCEPTED: ClassVar[UpdateOutcome]
    STALE: ClassVar[UpdateOutcome]
    DUPLICATE: ClassVar[UpdateOutcome]


UpdateOutcome.ACCEPTED = UpdateOutcome("accepted", True)
UpdateOutcome.STALE = UpdateOutcome("stale", False)
UpdateOutcome.DUPLICATE = UpdateOutcome("duplicate", False)


@frozen
class StoreStats:
    """
    The counters C{Stats} answers.

    @ivar workers: registered workers.
    @ivar free_slots: their free slots added up.
    @ivar waiting: C{NextWorker} calls waiting for a slot.
    @ivar dispatched: C{NextWorker} answers since the store started.
    """

    workers: int
    free_slots: int
    waiting: int
    dispatched: int


#: Why a store removes a worker: C{WorkerGone}, its ttl, its lease.
REMOVAL_REASONS = ("gone", "ttl expired", "lease expired")


@frozen
class PoolFigures:
    """
    One pool's figures, for metrics.

    @ivar pool: its name.
    @ivar workers: its registered workers.
    @ivar free_slots: their free slots added up.
    @ivar waiting: C{NextWorker} calls waiting for one of its slots.
    """

    pool: str
    workers: int
    free_slots: int
    waiting: int


@frozen
class WorkerRows:
    """
    One run of registered workers in id order, as C{ListWorkers} pages them.

    @ivar workers: at most the C{limit} asked for.
    @ivar more: whether workers follow the last of them.
    """

    workers: Sequence[RegisteredWorker]
    more: bool


class IWorkerStore(Interface):
    """
    The workers of a dispatcher by pool, the calls waiting for one, and who
    holds each worker.

    Workers are ordered in each pool by free slots (capacity minus answers
    since the last accepted update), then never answered since they entered
    the pool (earliest entered first), then least recently answered.  A
    worker with no free slot is never answered.
    """

    def update(report: WorkerReport, owner: Optional[Owner] = None) -> Result[UpdateOutcome]:
        """
        Apply a C{WorkerUpdate} sent by C{owner}; an accepted or duplicate
        update makes C{owner} the worker's holder and starts its ttl again.
        Freed slots go to calls waiting in its pool first.
        """

    def gone(worker_id: str) -> Result[bool]:
        """
        Remove a worker at once; whether it was registered.
        """

    def take(pool: str) -> Result[Optional[Worker]]:
        """
        Take a slot of the head of C{pool}'s queue if one is free and no call
        waits for one (those go first); C{None} otherwise.  Never waits.
        """

    def next_worker(
        pool: Optional[str] = None,
        timeout: Optional[float] = None,
        owner: Optional[Owner] = None,
    ) -> Result[Worker]:
        """
        Take a slot of the head of C{pool}'s queue, waiting up to C{timeout}
        seconds for one (first come first served) when none is free.

        A L{Deferred} result that waits gives up its place in line when
        cancelled.  Fails with C{NoWorkerAvailable} when no slot came (at
        once without a C{timeout}), with C{Overloaded} when the store's
        limit of waiting calls, in all or of C{owner}, is reached.
        """

    def list_workers(pool: Optional[str], after: Optional[str], limit: int) -> Result[WorkerRows]:
        """
        Up to C{limit} registered workers of C{pool} (of every pool when
        C{None}) with ids greater than C{after}, in id order.
        """

    def stats() -> Result[StoreStats]:
        """
        The store's counters.
        """

    def pools(names: Sequence[str], more: int) -> Result[List[PoolFigures]]:
        """
        The figures of the pools C{names} that exist, then of up to C{more}
        other pools (any), so that a caller can learn the pools a few at a
        time.
        """

    removed = Attribute(
        """
        A C{dict} of how many workers this process removed, by reason (one
        of L{REMOVAL_REASONS}).
        """
    )

    def available() -> bool:
        """
        Whether the store answers now (the shared store: its link is up and
        this replica may serve).
        """

    def owner_lost(owner: Owner) -> Result[None]:
        """
        C{owner}'s connection closed: its workers go after the lease grace,
        unless an update for them comes first.
        """

    def holds(owner: Owner) -> bool:
        """
        Whether workers belong to C{owner}, answered at once (from what this
        process knows).
        """

    def start() -> None:
        """
        The dispatcher is starting: begin what the store does in the
        background (connections, timers).
        """

    def stop() -> Result[None]:
        """
        The dispatcher is stopping: stop the store's timers, and fail every
        waiting call with C{NoWorkerAvailable}.
        """


__all__ = [
    "REMOVAL_REASONS",
    "IWorkerStore",
    "Owner",
    "PoolFigures",
    "Result",
    "StoreStats",
    "UpdateOutcome",
    "WorkerReport",
    "WorkerRows",
    "then",
]
