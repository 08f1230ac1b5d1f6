"""
Client libraries of amp-dispatch: L{FrontendClient} for front ends (which
worker takes my next job?) and L{SchedulerClient} for the scheduler (worker
updates, removals, listing).

Both are built from the reactor and a Twisted client endpoint string (or an
object providing L{IStreamClientEndpoint}), keep one connection up with
L{ClientService} and backoff once started, and return Deferreds (awaitable
in C{async def} code run by C{Deferred.fromCoroutine} or C{ensureDeferred})::

    client = FrontendClient(reactor, "tcp:127.0.0.1:8750")
    client.start()
    worker = await client.next_worker(pool="gpu", timeout=2.0)
    await client.stop()

Every call has a timeout (C{call_timeout}, plus the call's own C{timeout} for
C{next_worker}).  A call fails with the dispatcher's errors from
C{amp_dispatch_commands} (L{NoWorkerAvailable}, L{Overloaded},
L{StoreUnavailable} from replicas on a shared store, L{InvalidArgument}, the
latter also at once for an argument out of range), or
with the client's own: L{DispatcherUnavailable} (no connection within the
timeout, connecting failed, connection lost before the answer, client not
started or stopped) and L{CallTimedOut} (sent, but no answer within the
timeout).  Until a client has connected once, a failed connection attempt
fails its calls at once, with the cause (C{connection_error}); once it has,
calls wait through an outage for the reconnection.

The library configures no logging: its events go through structlog when
the application has configured structlog, else to the standard library's
C{logging} under C{amp_dispatch.client}, silent unless routed.
"""

from __future__ import annotations

from amp_dispatch_commands import (
    DispatchError,
    InvalidArgument,
    NoWorkerAvailable,
    Overloaded,
    StoreUnavailable,
)

from .._records import RegisteredWorker, Worker
from ._errors import CallTimedOut, ClientError, DispatcherUnavailable, WrongListener
from ._frontend import FrontendClient
from ._records import DispatcherStats, WorkerPage
from ._scheduler import SchedulerClient

__all__ = [
    "CallTimedOut",
    "ClientError",
    "DispatchError",
    "DispatcherStats",
    "DispatcherUnavailable",
    "FrontendClient",
    "InvalidArgument",
    "NoWorkerAvailable",
    "Overloaded",
    "RegisteredWorker",
    "SchedulerClient",
    "StoreUnavailable",
    "Worker",
    "WorkerPage",
    "WrongListener",
]
