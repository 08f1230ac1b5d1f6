"""
Workers as the dispatcher answers about them: one set of record classes for
the stores, the listeners' protocols and the clients.
"""

from __future__ import annotations

from typing import Tuple

from attrs import frozen


@frozen(eq=False)
class Worker:
    """
    A C{NextWorker} answer: the worker that takes the job, and where.

    Equal to any C{Worker} with the same three values, whatever its class
    (a store may answer with a subclass that carries more, see
    L{amp_dispatch.protocol._roles.EncodedWorker}).
    """

    worker_id: str
    host: str
    port: int

    def _values(self) -> Tuple[str, str, int]:
        return (self.worker_id, self.host, self.port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Worker):
            return NotImplemented
        return self._values() == other._values()

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Worker):
            return NotImplemented
        return self._values() != other._values()

    def __hash__(self) -> int:
        return hash(self._values())


@frozen
class RegisteredWorker:
    """
    A registered worker as C{ListWorkers} shows it.

    @ivar capacity: the free slots its last accepted update gave.
    @ivar free: its free slots now (capacity minus answers since).
    @ivar expires_in: seconds until its earliest pending removal (ttl or lease
        grace), -1.0 when none is pending.
    """

    worker_id: str
    host: str
    port: int
    pool: str
    capacity: int
    free: int
    expires_in: float
