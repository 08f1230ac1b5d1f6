"""
The store a dispatcher runs over, made from its configuration.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from ..protocol._roles import EncodedWorker
from ..store._memory import MemoryStore
from ._config import DEFAULT_CONFIG, DispatcherConfig


def open_store(clock: IReactorTime, config: DispatcherConfig = DEFAULT_CONFIG) -> MemoryStore:
    """
    The in-memory store with C{config}'s limits, its time from C{clock}; its
    workers are answered as L{EncodedWorker}s, which the front-end listener
    answers without encoding them again.
    """
    return MemoryStore(
        clock,
        lease_grace=config.lease_grace,
        max_waiting=config.max_waiting,
        max_waiting_per_owner=config.max_waiting_per_connection,
        record=EncodedWorker,
    )


__all__ = ["open_store"]
