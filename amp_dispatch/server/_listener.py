"""
One listener's side of its connections: its settings, the factory that caps
how many connections it keeps open (evicting an idle one to make room where
the listener says so), and the rate-limited warnings about its connections.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Set, cast
from typing import Protocol as TypingProtocol

from attrs import frozen
from twisted.internet.interfaces import IAddress, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, ServerFactory

from .._log import get_logger
from ..protocol._addresses import describe
from ..protocol._peerlog import Warnings

_log = get_logger("amp_dispatch.listener")


@frozen
class ListenerSettings:
    """
    What one listener allows each of its connections.

    @ivar role: C{"frontend"} or C{"scheduler"}.
    @ivar max_connections: the most connections open at once.
    @ivar max_box_bytes: the longest box a peer may send.
    @ivar idle_timeout: seconds a connection may stay silent before it is
        closed (0: never).
    @ivar evict: when full, make room for a new connection by closing the
        one silent the longest among those that may go (see
        L{ListenerConnection.evictable}); otherwise close the new one.
    """

    role: str
    max_connections: int
    max_box_bytes: int
    idle_timeout: float = 0.0
    evict: bool = False


class ListenerConnection(TypingProtocol):
    """
    What a listener needs of its connections' protocols.
    """

    def evictable(self) -> bool:
        """
        Whether the connection may be closed to make room (it holds nothing
        that closing it would lose).
        """

    def last_active(self) -> float:
        """
        When the connection last received a byte or finished a call.
        """

    def evict(self) -> None:
        """
        Close the connection to make room for another.
        """


class _Refused(Protocol):
    """
    A connection over the listener's cap: closed at once, before any byte
    is read (and, on a TLS listener, before the handshake).
    """

    def connectionMade(self) -> None:
        cast(ITCPTransport, self.transport).abortConnection()


class ListenerFactory(ServerFactory):
    """
    Builds each connection of one listener with C{build}, up to
    C{settings.max_connections} open at once; past it, evicts one (with
    C{settings.evict}) or closes the new one.  Warnings about its
    connections (refused, evicted, dropped, failed handshakes) are limited
    per listener (L{LogLimiter}), so reconnecting cannot make them many.

    @param build: makes the protocol of an accepted connection; it calls
        L{connection_closed} when its connection is lost.
    """

    noisy = False

    def __init__(
        self,
        settings: ListenerSettings,
        clock: IReactorTime,
        build: Callable[[ListenerFactory], Protocol],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._build = build
        self._connections: Dict[ListenerConnection, None] = {}
        self._evicted: Set[ListenerConnection] = set()
        #: Warnings about the listener's connections, limited per listener.
        self.warnings = Warnings(clock, _log, {"role": settings.role})
        #: Connections closed at once because the listener was full.
        self.refused = 0
        #: Connections closed to make room for a new one.
        self.evicted = 0

    @property
    def open(self) -> int:
        """
        Connections open now.
        """
        return len(self._connections)

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        settings = self.settings
        if self.open - len(self._evicted) >= settings.max_connections and not (
            settings.evict and self._evict(addr)
        ):
            self.refused += 1
            self.warnings.warn(
                "connection refused",
                peer=_peer(addr),
                open=self.open,
                max_connections=settings.max_connections,
            )
            refused = _Refused()
            refused.factory = self
            return refused
        protocol = self._build(self)
        protocol.factory = self
        self._connections[cast(ListenerConnection, protocol)] = None
        return protocol

    def _evict(self, addr: Optional[IAddress]) -> bool:
        """
        Close the connection silent the longest of those that may go, for
        one from C{addr}; whether there was one.
        """
        candidates = [
            connection
            for connection in self._connections
            if connection not in self._evicted and connection.evictable()
        ]
        if not candidates:
            return False
        victim = min(candidates, key=lambda connection: connection.last_active())
        self._evicted.add(victim)
        self.evicted += 1
        self.warnings.warn(
            "connection evicted",
            peer=_peer(addr),
            silent=round(self.clock.seconds() - victim.last_active(), 3),
            max_connections=self.settings.max_connections,
        )
        victim.evict()
        return True

    def connection_closed(self, protocol: object) -> None:
        """
        One of this listener's connections was lost.
        """
        connection = cast(ListenerConnection, protocol)
        self._connections.pop(connection, None)
        self._evicted.discard(connection)

    def stop(self) -> None:
        """
        Report the warnings held back now (the listener is stopping).
        """
        self.warnings.stop()


def _peer(address: Any) -> str:
    return "?" if address is None else describe(address)


__all__ = ["ListenerConnection", "ListenerFactory", "ListenerSettings"]
