"""
The front end's client: asks the dispatcher which worker takes the next job.
"""

from __future__ import annotations

from typing import Optional

from amp_dispatch_commands import NextWorker
from attrs import frozen
from twisted.internet.defer import Deferred

from ._client_connection import Answer, DispatcherClient


@frozen
class Worker:
    """
    A C{NextWorker} answer: the worker that takes the job, and where.
    """

    worker_id: str
    host: str
    port: int


class FrontendClient(DispatcherClient):
    """
    A client of the dispatcher's front-end listener.

    Keeps one connection up (L{start}, L{stop}) with backoff.  Every call has
    a timeout of C{call_timeout} seconds (plus the call's own C{timeout} for
    L{next_worker}) and fails with L{DispatcherUnavailable} when no connection
    comes within it or the connection is lost before the answer,
    L{CallTimedOut} when the answer does not come within it.

    @param reactor: the reactor to connect with and time calls by.
    @param endpoint: the front-end listener as a Twisted client endpoint
        string, e.g. C{"tcp:127.0.0.1:8750"}.
    @param call_timeout: seconds a call may take, connecting included.
    @param fail_after_failures: if given, a call fails as soon as that many
        connection attempts in a row failed while it waited (for one-shot
        tools: a refused connection fails the call at once with 1).
    @param retry_policy: seconds to wait before reconnect attempt N; default
        C{twisted.application.internet.backoffPolicy()}.
    """

    _role = "frontend"

    def next_worker(
        self, pool: Optional[str] = None, timeout: Optional[float] = None
    ) -> Deferred[Worker]:
        """
        Which worker takes my next job?  Takes one of its free slots.

        @param pool: the pool (the dispatcher's default pool if C{None}).
        @param timeout: seconds the dispatcher may wait for a free slot when
            none is free now (C{None} or 0: do not wait).
        @return: fires with the L{Worker}, or fails with L{NoWorkerAvailable},
            L{Overloaded}, L{InvalidArgument}, L{DispatcherUnavailable} or
            L{CallTimedOut}.
        """
        answered = self._connection.call(
            NextWorker, {"pool": pool, "timeout": timeout}, wait=timeout
        )
        return answered.addCallback(_worker)


def _worker(answer: Answer) -> Worker:
    return Worker(answer["worker_id"], answer["host"], answer["port"])
