"""
The one place per-command concerns plug in: each listener connection's
identity (L{ConnectionInfo}), and the L{CommandHook} that both the fast
paths and the generic receivers call for every command they handle, with
its outcome.  Metrics count through it; a concern written here is written
once for both paths.

The fast paths may report several boxes of one read in one call (C{count}),
so that counting costs a call per read, not per box.
"""

from __future__ import annotations

from itertools import count as _count
from typing import Protocol

from attrs import define, field

# Outcomes, by command.  NextWorker:
ANSWERED = "answered"
NO_WORKER = "no worker"
OVERLOADED = "overloaded"
TIMED_OUT = "timed out"
#: The connection closed while the call waited.
CANCELLED = "cancelled"
# WorkerUpdate: the names of UpdateOutcome (accepted, stale, duplicate).
# WorkerGone:
KNOWN = "known"
UNKNOWN = "unknown"
# Every command:
INVALID = "invalid"
#: The shared store did not answer.
STORE_UNAVAILABLE = "store unavailable"


_numbers = _count(1)


@define
class ConnectionInfo:
    """
    One listener connection, as hooks and logs see it.

    @ivar role: C{"frontend"} or C{"scheduler"}.
    @ivar number: unique in the process: the connection's owner value in
        the store (see L{IWorkerStore.update}).
    @ivar peer: the peer's address, once connected.
    """

    role: str
    number: int = field(factory=lambda: next(_numbers))
    peer: str = "?"


class CommandHook(Protocol):
    """
    Called for handled commands: C{count} boxes of C{command} (its name on
    the wire) came to C{outcome} on C{connection}.
    """

    def __call__(
        self, command: bytes, outcome: str, connection: ConnectionInfo, count: int
    ) -> None: ...


def no_hook(command: bytes, outcome: str, connection: ConnectionInfo, count: int) -> None:
    """
    The hook when none is given: does nothing.
    """


__all__ = [
    "ANSWERED",
    "CANCELLED",
    "INVALID",
    "KNOWN",
    "NO_WORKER",
    "OVERLOADED",
    "STORE_UNAVAILABLE",
    "TIMED_OUT",
    "UNKNOWN",
    "CommandHook",
    "ConnectionInfo",
    "no_hook",
]
