"""
Twisted's generic AMP protocol over a role's box receiver, with no caps and
no limits: the oracle the listeners' own protocols are tested against (same
answers, same bytes), and a reference for what they add.
"""

from __future__ import annotations

from typing import Optional, Type

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.protocols import amp
from twisted.python.failure import Failure

from ..store._interface import IWorkerStore
from ._framing import KeyTooLong
from ._hooks import CommandHook, ConnectionInfo
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
    """

    noisy = False

    def __init__(
        self,
        receiver: Type[_RoleReceiver],
        store: IWorkerStore,
        clock: IReactorTime,
        hook: CommandHook,
    ) -> None:
        self.receiver = receiver
        self.store = store
        self.clock = clock
        self.hook = hook

    def buildProtocol(self, addr: Optional[IAddress]) -> GenericProtocol:
        receiver = self.receiver(
            self.store, self.clock, ConnectionInfo(self.receiver.role), self.hook
        )
        protocol = GenericProtocol(receiver)
        protocol.factory = self
        return protocol


__all__ = ["GenericFactory", "GenericProtocol"]
