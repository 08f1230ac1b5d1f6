"""
The one place per-command concerns plug in: each listener connection's
identity (L{ConnectionInfo}), and the L{CommandHook} that both the fast
paths and the generic receivers call for every command they handle, with
its outcome, for every input they reject, with its kind, and for every
C{NextWorker} that waited, with how long.  Metrics count through it; a
concern written here is written once for both paths.

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

# Kinds of rejected input (a bounded set: metrics label them).
#: A command's arguments did not parse or break the schema's bounds.
INVALID_ARGUMENT = "invalid argument"
#: A command the listener does not serve.
NOT_SERVED = "command not served"
#: A box that is not a call: an answer, an error, an empty box, no C{_command}.
NOT_A_COMMAND = "not a command"
#: Bytes that are not AMP boxes we accept (the connection is dropped).
BAD_FRAMING = "bad framing"
#: A TLS connection whose handshake failed.
TLS_HANDSHAKE = "tls handshake failed"


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
    the wire) came to C{outcome} on C{connection}.  Its methods are told of
    rejected input and of waits.
    """

    def __call__(
        self, command: bytes, outcome: str, connection: ConnectionInfo, count: int
    ) -> None: ...

    def rejected(self, role: str, kind: str) -> None:
        """
        An input on a C{role} listener was rejected, of C{kind} (one of the
        kinds above).
        """

    def waited(self, seconds: float) -> None:
        """
        A C{NextWorker} that found no free slot waited C{seconds} for its
        answer (a worker, or none at its timeout).
        """


class _NoHook:
    """
    The hook when none is given: does nothing.
    """

    def __call__(
        self, command: bytes, outcome: str, connection: ConnectionInfo, count: int
    ) -> None:
        pass

    def rejected(self, role: str, kind: str) -> None:
        pass

    def waited(self, seconds: float) -> None:
        pass


no_hook: CommandHook = _NoHook()


__all__ = [
    "ANSWERED",
    "BAD_FRAMING",
    "CANCELLED",
    "INVALID",
    "INVALID_ARGUMENT",
    "KNOWN",
    "NOT_A_COMMAND",
    "NOT_SERVED",
    "NO_WORKER",
    "OVERLOADED",
    "STORE_UNAVAILABLE",
    "TIMED_OUT",
    "TLS_HANDSHAKE",
    "UNKNOWN",
    "CommandHook",
    "ConnectionInfo",
    "no_hook",
]
