"""
Several endpoints of one listener (replicas of a dispatcher sharing a
store), used as one: L{FailoverEndpoint} connects to the first of them that
accepts, starting with the last that did, so a replica's death costs a
client one reconnect.
"""

from __future__ import annotations

from typing import List, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class FailoverEndpoint:
    """
    Connects through the first of C{endpoints} that accepts, trying them in
    turn from the one that last did (the first, at first); fails with a
    L{ConnectError} naming every one's failure when none does.

    @param names: how each endpoint is named in messages.
    """

    def __init__(self, endpoints: Sequence[IStreamClientEndpoint], names: Sequence[str]) -> None:
        if not endpoints or len(endpoints) != len(names):
            raise ValueError("give at least one endpoint, and a name for each")
        self._endpoints = list(endpoints)
        self._names = list(names)
        self._current = 0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        failures: List[str] = []
        count = len(self._endpoints)
        for offset in range(count):
            index = (self._current + offset) % count
            try:
                protocol: IProtocol = await self._endpoints[index].connect(factory)
            except CancelledError:
                raise
            except Exception as e:
                failures.append(f"{self._names[index]}: {e}")
                continue
            self._current = index
            return protocol
        raise ConnectError(string="; ".join(failures))

    def __str__(self) -> str:
        return ", ".join(self._names)


__all__ = ["FailoverEndpoint"]
