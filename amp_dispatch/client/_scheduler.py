"""
The scheduler's client: registers, updates and removes workers, lists them,
and refills the dispatcher after every reconnect.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from amp_dispatch_commands import (
    MAX_PAGE,
    InvalidArgument,
    ListWorkers,
    WorkerGone,
    WorkerUpdate,
)
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed
from twisted.protocols import amp
from twisted.python.failure import Failure

from .._log import get_logger
from .._records import RegisteredWorker
from ._arguments import Answer, Arguments
from ._base import DispatcherClient
from ._calls import call_remote
from ._connection import Endpoint
from ._records import WorkerPage

_log = get_logger("amp_dispatch.client")


class SchedulerClient(DispatcherClient):
    """
    A client of the dispatcher's scheduler listener.

    Keeps one connection up (L{start}, L{stop}) with backoff; calls time out
    and fail as L{FrontendClient}'s do.

    B{Sequence numbers.}  An L{update} without C{seq} is numbered when it is
    sent: C{max(last + 1, int(reactor.seconds() * 1_000_000))}, where C{last}
    is the seq of the last update this client sent for that worker.  Numbers
    grow for each worker, and being microseconds of wall-clock time they stay
    above those of an earlier run of the scheduler (as long as the clock does
    not step back), so a restarted scheduler's updates are not taken as stale
    by a dispatcher that kept its state.  A caller that passes C{seq} numbers
    that worker's updates itself and should keep them growing.  With
    C{number_updates=False} the client numbers nothing: an update goes out
    with the C{seq} given, or none (always accepted, and the dispatcher
    forgets the worker's seq), so a one-off tool leaves no seq behind that
    would make the scheduler's own updates look stale.

    B{Resync.}  The client remembers the last update it sent for each worker
    (L{gone} forgets it).  On every new connection it first sends all of them
    again, unchanged (same seq), before any other call goes out: a restarted
    dispatcher is refilled within one reconnect delay, and one that kept its
    state sees duplicates, which change nothing but renew the workers' leases
    (now held by this connection).  An update is remembered once sent, even if
    its answer is lost with the connection; an update that failed before it
    was sent is not.

    Built as L{DispatcherClient} is, C{endpoint} the scheduler listener
    (e.g. C{"tcp:127.0.0.1:8751"}); its reactor's C{seconds()} numbers
    updates.

    @param number_updates: number updates sent without C{seq} (the
        default), or send them as given.
    """

    _role = "scheduler"

    def __init__(
        self, reactor: Any, endpoint: Endpoint, *, number_updates: bool = True, **options: Any
    ) -> None:
        super().__init__(reactor, endpoint, **options)
        self._number_updates = number_updates
        self._sent: Dict[str, Arguments] = {}

    def update(
        self,
        worker_id: str,
        host: str,
        port: int,
        capacity: int,
        pool: Optional[str] = None,
        seq: Optional[int] = None,
        ttl: Optional[float] = None,
    ) -> Deferred[bool]:
        """
        Register or replace a worker: its address and its free slots now.

        @param capacity: free job slots the worker has now (0: alive, full).
        @param pool: its pool (the dispatcher's default pool if C{None}).
        @param seq: this update's number; if C{None}, numbered by the
            client (unless made with C{number_updates=False}).
        @param ttl: if > 0, the dispatcher removes the worker that many seconds
            after its last update.
        @return: fires with whether the dispatcher accepted the update
            (C{False}: stale or duplicate seq, nothing changed but the lease),
            or fails as L{DispatcherClient} calls do.
        """
        arguments: Arguments = {
            "worker_id": worker_id,
            "host": host,
            "port": port,
            "capacity": capacity,
            "pool": pool,
            "seq": seq,
            "ttl": ttl,
        }
        answered = self._connection.call(WorkerUpdate, arguments, before_send=self._sending)
        return answered.addCallback(_field, "accepted")

    def gone(self, worker_id: str) -> Deferred[bool]:
        """
        Remove a worker at once, and forget its last update.

        @return: fires with whether the dispatcher knew the worker.
        """
        answered = self._connection.call(
            WorkerGone, {"worker_id": worker_id}, before_send=self._forgetting
        )
        return answered.addCallback(_field, "known")

    def list_workers(
        self, pool: Optional[str] = None, after: Optional[str] = None, limit: Optional[int] = None
    ) -> Deferred[WorkerPage]:
        """
        One page of the registered workers (of C{pool}, or of all pools) with
        ids after C{after}, at most C{limit} (default 100, at most 500).
        """
        answered = self._connection.call(
            ListWorkers, {"pool": pool, "after": after, "limit": limit}
        )
        return answered.addCallback(_page)

    def all_workers(
        self, pool: Optional[str] = None, after: Optional[str] = None, limit: Optional[int] = None
    ) -> Deferred[List[RegisteredWorker]]:
        """
        Every registered worker (of C{pool}, or of all pools) with an id
        after C{after} (if given), following C{next_after} from page to page:
        each page is a call of its own, of up to C{limit} workers (default
        and most 500).
        """
        return Deferred.fromCoroutine(
            self._all_workers(pool, after, MAX_PAGE if limit is None else limit)
        )

    async def _all_workers(
        self, pool: Optional[str], after: Optional[str], limit: int
    ) -> List[RegisteredWorker]:
        workers: List[RegisteredWorker] = []
        while True:
            page = await self.list_workers(pool=pool, after=after, limit=limit)
            workers.extend(page.workers)
            if page.next_after is None:
                return workers
            after = page.next_after

    def _sending(self, arguments: Arguments) -> None:
        """
        Number an update that goes out now, and remember it.
        """
        worker_id = arguments["worker_id"]
        if "seq" not in arguments and self._number_updates:
            last = self._sent.get(worker_id, {}).get("seq", -1)
            arguments["seq"] = max(last + 1, int(self._reactor.seconds() * 1_000_000))
        self._sent[worker_id] = arguments

    def _forgetting(self, arguments: Arguments) -> None:
        """
        A removal goes out now: its worker's last update is not to be resent.
        """
        self._sent.pop(arguments["worker_id"], None)

    def _connected(self, protocol: amp.AMP) -> None:
        """
        Send every remembered update again, first thing on a new connection.
        """
        if self._sent:
            _log.info("resending worker updates", endpoint=self.endpoint, workers=len(self._sent))
        for arguments in list(self._sent.values()):
            resent = call_remote(protocol, WorkerUpdate, **arguments)
            resent.addErrback(self._resend_failed, arguments)

    def _resend_failed(self, failure: Failure, arguments: Arguments) -> None:
        """
        A resent update failed: log it; forget it if the dispatcher refused it.
        """
        worker_id = arguments["worker_id"]
        if isinstance(failure.value, ConnectionClosed):
            # The connection went again; the next one resends.
            return
        if isinstance(failure.value, InvalidArgument) and self._sent.get(worker_id) is arguments:
            del self._sent[worker_id]
        _log.warning(
            "resending worker update failed",
            endpoint=self.endpoint,
            worker_id=worker_id,
            error=failure.getErrorMessage(),
        )


def _field(answer: Answer, name: str) -> bool:
    return bool(answer[name])


def _page(answer: Answer) -> WorkerPage:
    return WorkerPage(
        [RegisteredWorker(**row) for row in answer["workers"]], answer.get("next_after")
    )
