"""
A dispatcher in memory, for testing code that uses the clients: no sockets,
no reactor, time moved by hand (as C{treq.testing} does for HTTP code).

L{MemoryDispatcher} runs the real dispatcher (its store and its listeners'
protocols, fast paths included) on its own L{Clock}, and makes real
L{FrontendClient}s and L{SchedulerClient}s connected to it in memory.
Nothing moves until the test says so: L{MemoryDispatcher.flush} delivers
every byte waiting on every connection, both ways, and
C{dispatcher.clock.advance(seconds)} runs what time brings (call timeouts,
C{NextWorker} waits, ttl, lease grace, reconnects)::

    from amp_dispatch.testing import MemoryDispatcher

    dispatcher = MemoryDispatcher()
    scheduler = dispatcher.scheduler_client()
    frontend = dispatcher.frontend_client()
    accepted = scheduler.update("w1", "10.0.0.1", 9000, capacity=2)
    dispatcher.flush()            # accepted has fired with True
    worker = frontend.next_worker()
    dispatcher.flush()            # worker has fired with Worker("w1", "10.0.0.1", 9000)

Deferreds fire during L{MemoryDispatcher.flush}; a test that awaits them
runs the flush from elsewhere (or checks their results after it).
L{DispatcherConfig}, the server's settings, is here too for such tests.
"""

from __future__ import annotations

from itertools import count
from typing import Any, List, Tuple, TypeVar

from amp_dispatch_commands import PROTOCOL_VERSION
from attrs import asdict
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, IOPump, connect
from zope.interface import implementer

from .client import DispatcherStats, FrontendClient, SchedulerClient
from .client._base import DispatcherClient
from .server._config import DEFAULT_CONFIG, DispatcherConfig
from .server._listeners import Listeners, build_listeners
from .server._stores import open_memory_store
from .store._memory import MemoryStore

__all__ = ["DispatcherConfig", "MemoryDispatcher"]

_Client = TypeVar("_Client", bound=DispatcherClient)


def _serve(clock: Clock, config: DispatcherConfig) -> Tuple[MemoryStore, Listeners]:
    """
    A dispatcher's store and listeners, as the server builds them.
    """
    store = open_memory_store(clock, config)
    return store, build_listeners(store, clock, config)


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    """
    Connects a client to one listener of a L{MemoryDispatcher}, in memory;
    the connection is up at once.
    """

    def __init__(self, dispatcher: MemoryDispatcher, role: str) -> None:
        self._dispatcher = dispatcher
        self._role = role

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return succeed(self._dispatcher._connect(self._role, factory))

    def __str__(self) -> str:
        return f"memory:{self._role}"


class MemoryDispatcher:
    """
    A real dispatcher in memory, and clients connected to it.

    @param config: the dispatcher's settings, as the server takes them (its
        store's limits, its listeners' caps; the endpoints are not listened
        on).

    @ivar clock: the dispatcher's and its clients' clock: C{advance} it to
        run timeouts, waits, ttl, lease grace and reconnects.
    @ivar config: the settings it runs with.
    """

    def __init__(self, config: DispatcherConfig = DEFAULT_CONFIG) -> None:
        self.clock = Clock()
        self.config = config
        self._store, self._listeners = _serve(self.clock, config)
        self._pumps: List[IOPump] = []
        self._numbers = count(1)
        self._clients: List[DispatcherClient] = []

    def frontend_client(self, **options: Any) -> FrontendClient:
        """
        A L{FrontendClient} of the front-end listener, started: its
        connection is up, its first call goes out at once.

        @param options: passed to L{FrontendClient} (C{call_timeout},
            C{keepalive}, C{retry_policy}, ...).
        """
        return self._started(
            FrontendClient(self.clock, _MemoryEndpoint(self, "frontend"), **options)
        )

    def scheduler_client(self, **options: Any) -> SchedulerClient:
        """
        A L{SchedulerClient} of the scheduler listener, started: its
        connection is up, its first call goes out at once.

        @param options: passed to L{SchedulerClient} (C{call_timeout},
            C{number_updates}, ...).
        """
        return self._started(
            SchedulerClient(self.clock, _MemoryEndpoint(self, "scheduler"), **options)
        )

    def flush(self) -> None:
        """
        Deliver every byte waiting on every connection, both ways, and run
        what is due now on the clock (work put off with C{callLater(0)}),
        again and again until nothing moves.  Closed connections are told
        so on both sides.
        """
        moved = True
        while moved:
            moved = False
            for pump in list(self._pumps):
                moved = pump.flush() or moved
            if self._due_now():
                self.clock.advance(0)
                moved = True
            self._pumps = [pump for pump in self._pumps if not _closed(pump)]

    def stats(self) -> DispatcherStats:
        """
        The dispatcher's counters, as a C{Stats} call would answer now.
        """
        return DispatcherStats(**asdict(self._store.stats()), protocol=PROTOCOL_VERSION)

    def drop_connections(self) -> None:
        """
        Close every connection from the dispatcher's side, as a network
        failure would, and flush: the clients see them lost (calls waiting
        for an answer fail with L{DispatcherUnavailable}) and reconnect after
        their retry delay (advance the clock).  The dispatcher keeps its
        workers (each for its lease grace, as its owner connection is gone).
        """
        for pump in self._pumps:
            pump.serverIO.loseConnection()
        self.flush()

    def restart(self) -> None:
        """
        Restart the dispatcher: calls waiting for a free slot are answered
        C{NO_WORKER_AVAILABLE}, every connection is closed, and it comes back
        empty (a L{SchedulerClient} refills it when it reconnects).
        """
        self._shut_down()
        self.drop_connections()
        self._store, self._listeners = _serve(self.clock, self.config)

    def stop(self) -> None:
        """
        Stop every client made here (closing its connection), then the
        dispatcher; for the end of a test.
        """
        for client in self._clients:
            client.stop()
        self.flush()
        self._shut_down()
        self.flush()

    def _shut_down(self) -> None:
        self._store.stop()
        self._listeners.stop()

    def _started(self, client: _Client) -> _Client:
        client.start()
        self._clients.append(client)
        return client

    def _connect(self, role: str, factory: IProtocolFactory) -> IProtocol:
        """
        Join a client protocol from C{factory} to a new protocol of the
        C{role} listener.
        """
        listener = getattr(self._listeners, role)
        # Addresses that read well in logs: memory:frontend, memory:client-1.
        here = UNIXAddress(f"memory:{role}")
        there = UNIXAddress(f"memory:client-{next(self._numbers)}")
        server = listener.factory.buildProtocol(there)
        client = factory.buildProtocol(here)
        assert client is not None
        pump = connect(
            server,
            FakeTransport(server, isServer=True, hostAddress=here, peerAddress=there),
            client,
            FakeTransport(client, isServer=False, hostAddress=there, peerAddress=here),
            greet=False,
            clock=self.clock,
        )
        self._pumps.append(pump)
        return client

    def _due_now(self) -> bool:
        now = self.clock.seconds()
        return any(call.getTime() <= now for call in self.clock.getDelayedCalls())


def _closed(pump: IOPump) -> bool:
    """
    Whether both sides of C{pump}'s connection were told it closed.
    """
    return bool(pump.clientIO.disconnected and pump.serverIO.disconnected)
