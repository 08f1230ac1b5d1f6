"""
The wire schema of amp-dispatch, protocol v1.

A front end sends L{NextWorker} (and L{Stats}) to the front-end listener; the
scheduler sends L{WorkerUpdate}, L{WorkerGone}, L{ListWorkers} (and L{Stats})
to the scheduler listener.  Every command declares L{InvalidArgument} and
L{StoreUnavailable}; the
errors cross the wire as the codes in L{ERROR_CODES}.
"""

from ._arguments import (
    MAX_NUMBER_TEXT,
    MAX_TEXT_BYTES,
    BoundedInteger,
    HostName,
    Identifier,
    Seconds,
)
from ._errors import (
    INVALID_ARGUMENT,
    NO_WORKER_AVAILABLE,
    OVERLOADED,
    STORE_UNAVAILABLE,
    DispatchError,
    InvalidArgument,
    NoWorkerAvailable,
    Overloaded,
    StoreUnavailable,
)
from ._frontend import MAX_TIMEOUT, NextWorker
from ._scheduler import (
    DEFAULT_PAGE,
    MAX_CAPACITY,
    MAX_PAGE,
    MAX_SEQ,
    MAX_TTL,
    MIN_SEQ,
    ListWorkers,
    WorkerGone,
    WorkerUpdate,
)
from ._shared import PROTOCOL_VERSION, Stats

#: The pool a command means when it names none.
DEFAULT_POOL = "default"

#: Every error class of the protocol and its code on the wire.
ERROR_CODES = {
    NoWorkerAvailable: NO_WORKER_AVAILABLE,
    Overloaded: OVERLOADED,
    InvalidArgument: INVALID_ARGUMENT,
    StoreUnavailable: STORE_UNAVAILABLE,
}

#: The commands each listener serves.
FRONTEND_COMMANDS = (NextWorker, Stats)
SCHEDULER_COMMANDS = (WorkerUpdate, WorkerGone, ListWorkers, Stats)

__all__ = [
    "DEFAULT_PAGE",
    "DEFAULT_POOL",
    "ERROR_CODES",
    "FRONTEND_COMMANDS",
    "INVALID_ARGUMENT",
    "MAX_CAPACITY",
    "MAX_NUMBER_TEXT",
    "MAX_PAGE",
    "MAX_SEQ",
    "MAX_TEXT_BYTES",
    "MAX_TIMEOUT",
    "MAX_TTL",
    "MIN_SEQ",
    "NO_WORKER_AVAILABLE",
    "OVERLOADED",
    "PROTOCOL_VERSION",
    "SCHEDULER_COMMANDS",
    "STORE_UNAVAILABLE",
    "BoundedInteger",
    "DispatchError",
    "HostName",
    "Identifier",
    "InvalidArgument",
    "ListWorkers",
    "NextWorker",
    "NoWorkerAvailable",
    "Overloaded",
    "Seconds",
    "Stats",
    "StoreUnavailable",
    "WorkerGone",
    "WorkerUpdate",
]
