"""
The errors the v1 commands declare, and their codes on the wire.

AMP rebuilds a remote error on the caller's side as C{ErrorClass(description)}:
each class is built from one string, and only that string crosses the wire.
"""

from __future__ import annotations

from typing import Dict, Type


class DispatchError(Exception):
    """
    Base class of the errors amp-dispatch declares on its commands.
    """


class NoWorkerAvailable(DispatchError):
    """
    No worker of the pool had a free slot (within the call's timeout, if it
    gave one).
    """


class Overloaded(DispatchError):
    """
    The dispatcher already holds its limit of waiting C{NextWorker} calls.
    """


class StoreUnavailable(DispatchError):
    """
    The dispatcher's shared store did not answer (unreachable, or not in
    time).  The call may or may not have taken effect there; calling again
    is safe for every command but C{NextWorker} (which may then take a
    second slot).
    """


class InvalidArgument(DispatchError):
    """
    An argument was missing, did not parse or was out of range.  The message
    names the field and why; nothing changed and the connection stays open.
    """


NO_WORKER_AVAILABLE = b"NO_WORKER_AVAILABLE"
OVERLOADED = b"OVERLOADED"
INVALID_ARGUMENT = b"INVALID_ARGUMENT"
STORE_UNAVAILABLE = b"STORE_UNAVAILABLE"

ErrorMap = Dict[Type[Exception], bytes]

#: Declared by every command: any command can be sent bad arguments, and
#: any can meet a shared store that does not answer.
COMMON_ERRORS: ErrorMap = {InvalidArgument: INVALID_ARGUMENT, StoreUnavailable: STORE_UNAVAILABLE}
