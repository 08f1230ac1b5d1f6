"""
One listener's side of its connections: its settings, the factory that caps
how many connections it keeps open, and the rate-limited warnings about the
connections it refuses or whose TLS handshake fails.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional, cast

import structlog
from attrs import frozen
from twisted.internet.interfaces import IAddress, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, ServerFactory

from ._addresses import describe
from ._peerlog import LogLimiter, shown

_log = structlog.get_logger("amp_dispatch.listener")


@frozen
class ListenerSettings:
    """
    What one listener allows each of its connections.

    @ivar role: C{"frontend"} or C{"scheduler"}.
    @ivar max_connections: the most connections open at once; one more is
        closed as soon as it is accepted.
    @ivar max_box_bytes: the longest box a peer may send.
    @ivar idle_timeout: seconds a connection may stay silent before it is
        closed (0: never).
    """

    role: str
    max_connections: int
    max_box_bytes: int
    idle_timeout: float = 0.0


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
    C{settings.max_connections} open at once.

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
        #: Connections open now.
        self.open = 0
        self._refusals = LogLimiter(clock, partial(self._held_back, "connection refused"))
        self._handshakes = LogLimiter(clock, partial(self._held_back, "tls handshake failed"))

    def buildProtocol(self, addr: Optional[IAddress]) -> Protocol:
        if self.open >= self.settings.max_connections:
            if self._refusals.allow():
                _log.warning(
                    "connection refused",
                    role=self.settings.role,
                    peer=_peer(addr),
                    open=self.open,
                    max_connections=self.settings.max_connections,
                )
            refused = _Refused()
            refused.factory = self
            return refused
        self.open += 1
        protocol = self._build(self)
        protocol.factory = self
        return protocol

    def connection_closed(self) -> None:
        """
        One of this listener's connections was lost.
        """
        self.open -= 1

    def handshake_failed(self, peer: str, reason: str) -> None:
        """
        A connection's TLS handshake failed: it never reached AMP.
        """
        if self._handshakes.allow():
            _log.warning(
                "tls handshake failed", role=self.settings.role, peer=peer, reason=shown(reason)
            )

    def stop(self) -> None:
        """
        Report the warnings held back now (the listener is stopping).
        """
        self._refusals.stop()
        self._handshakes.stop()

    def _held_back(self, event: str, count: int) -> None:
        _log.warning("log lines suppressed", suppressed=event, count=count, role=self.settings.role)


def _peer(address: Any) -> str:
    return "?" if address is None else describe(address)


__all__ = ["ListenerFactory", "ListenerSettings"]
