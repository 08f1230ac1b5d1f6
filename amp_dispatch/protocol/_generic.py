"""
Twisted's generic AMP protocol over a role's box receiver, with no caps and
no limits: the oracle the listeners' own protocols are tested against (same
answers, same bytes), and a reference for what they add.
"""

from __future__ import annotations

from typing import Optional, Type

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory
from twisted.protocols import amp
from twisted.python.failure import Failure

from ..store._memory import WorkerQueue
from ._framing import KeyTooLong
from ._receivers import _RoleResponder


class GenericProtocol(amp.BinaryBoxProtocol):
    """
    The AMP box protocol for one connection, its boxes handled by a role's
    responder: Twisted's generic path, which the tests compare the fast path
    with.
    """

    def __init__(self, responder: _RoleResponder) -> None:
        super().__init__(responder)
        self._responder = responder

    def lengthLimitExceeded(self, length: int) -> None:
        self._responder.dropped(str(KeyTooLong(length)))
        super().lengthLimitExceeded(length)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        # Like amp.AMP: answers that come due later are dropped, not written.
        self.transport = None


class GenericFactory(ServerFactory):
    """
    Builds each connection of one listener on Twisted's generic AMP protocol
    with a fresh responder of its role (for the tests: no caps, no limits).
    """

    noisy = False

    def __init__(self, responder: Type[_RoleResponder], queue: WorkerQueue) -> None:
        self.responder = responder
        self.queue = queue

    def buildProtocol(self, addr: Optional[IAddress]) -> GenericProtocol:
        protocol = GenericProtocol(self.responder(self.queue))
        protocol.factory = self
        return protocol


__all__ = ["GenericFactory", "GenericProtocol"]
