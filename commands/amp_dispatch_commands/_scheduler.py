"""
Commands the scheduler sends, on the scheduler listener.  Only these change the
worker list.
"""

from __future__ import annotations

from twisted.protocols import amp

from ._arguments import BoundedInteger, HostName, Identifier, Seconds
from ._command import SchemaCommand
from ._errors import COMMON_ERRORS

#: The most free slots a C{WorkerUpdate} may give a worker.
MAX_CAPACITY = 1_000_000_000
#: The range of C{WorkerUpdate}'s C{seq}: a signed 64-bit integer.
MIN_SEQ = -(1 << 63)
MAX_SEQ = (1 << 63) - 1
#: The longest C{ttl} of a worker, in seconds (a day).
MAX_TTL = 86_400.0
#: The most workers one C{ListWorkers} page holds.
MAX_PAGE = 500
#: The page size when C{ListWorkers} gives no C{limit}.
DEFAULT_PAGE = 100


class WorkerUpdate(SchemaCommand):
    """
    Insert or replace a worker: its address and its free job slots now.

    An accepted update sets the worker's free slots to C{capacity} (forgetting
    the answers given since the last one).  C{accepted} is C{False} for a stale
    C{seq} (lower than the last accepted) or a duplicate one (equal: it renews
    the worker's lease and ttl, nothing else).  C{ttl} > 0 removes the worker
    that many seconds after its last accepted or duplicate update.  Bounds:
    C{capacity} 0..L{MAX_CAPACITY}, C{seq} L{MIN_SEQ}..L{MAX_SEQ}, C{ttl} at
    most L{MAX_TTL}.
    """

    commandName = b"WorkerUpdate"
    arguments = [
        (b"worker_id", Identifier()),
        (b"host", HostName()),
        (b"port", BoundedInteger(1, 65535)),
        (b"capacity", BoundedInteger(0, MAX_CAPACITY)),
        (b"pool", Identifier(optional=True)),
        (b"seq", BoundedInteger(MIN_SEQ, MAX_SEQ, optional=True)),
        (b"ttl", Seconds(MAX_TTL, optional=True)),
    ]
    response = [(b"accepted", amp.Boolean())]
    errors = dict(COMMON_ERRORS)


class WorkerGone(SchemaCommand):
    """
    Remove a worker at once.  C{known} is C{False} if it was not registered.
    """

    commandName = b"WorkerGone"
    arguments = [(b"worker_id", Identifier())]
    response = [(b"known", amp.Boolean())]
    errors = dict(COMMON_ERRORS)


class ListWorkers(SchemaCommand):
    """
    One page of the registered workers (of C{pool}, or of all pools), in
    C{worker_id} order after C{after} (text as a worker id is).  C{next_after}
    is present only when more follow: pass it as C{after} for the next page.
    C{expires_in} is the seconds until the worker's earliest pending removal
    (ttl or lease grace), -1 when none is pending.
    """

    commandName = b"ListWorkers"
    arguments = [
        (b"pool", Identifier(optional=True)),
        (b"after", Identifier(optional=True)),
        (b"limit", BoundedInteger(1, MAX_PAGE, optional=True)),
    ]
    response = [
        (
            b"workers",
            amp.AmpList(
                [
                    (b"worker_id", amp.Unicode()),
                    (b"host", amp.Unicode()),
                    (b"port", amp.Integer()),
                    (b"pool", amp.Unicode()),
                    (b"capacity", amp.Integer()),
                    (b"free", amp.Integer()),
                    (b"expires_in", amp.Float()),
                ]
            ),
        ),
        (b"next_after", amp.Unicode(optional=True)),
    ]
    errors = dict(COMMON_ERRORS)
