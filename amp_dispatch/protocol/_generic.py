"""
Twisted's generic AMP protocol over a role's box receiver, with no caps and
no limits: the oracle the listeners' own protocols are tested against (same
answers, same bytes), and a reference for what they add.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory
from twisted.protocols import amp
from twisted.python.failure import Failure

from ._framing import KeyTooLong
from ._receivers import _RoleReceiver


class GenericProtocol(amp.BinaryBoxProtocol):
    """
    The AMP box protocol for one connection, its boxes handled by a role's
    receiver: Twisted's generic path, which the tests compare the listeners'
    own protocols with.
    """

    def __init__(self, receiver: _RoleReceiver) -> None:
        super().__init__(receiver)
        self._receiver = receiver

    def lengthLimitExceeded(self, length: int) -> None:
        self._receiver.dropped(str(KeyTooLong(length)))
        super().lengthLimitExceeded(length)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        # Like amp.AMP: answers that come due later are dropped, not written.
        self.transport = None


class GenericFactory(ServerFactory):
    """
    Builds each connection of one listener on Twisted's generic AMP protocol
    with a fresh receiver of its role (for the tests: no caps, no limits).

    @param receiver: makes the receiver of a new connection.
    """

    noisy = False

    def __init__(self, receiver: Callable[[], _RoleReceiver]) -> None:
        self._receiver = receiver

    def buildProtocol(self, addr: Optional[IAddress]) -> GenericProtocol:
        protocol = GenericProtocol(self._receiver())
        protocol.factory = self
        return protocol


__all__ = ["GenericFactory", "GenericProtocol"]
