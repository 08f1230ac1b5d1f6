"""
Commands the scheduler sends, on the scheduler listener.  Only these change the
worker list.
"""

from __future__ import annotations

from twisted.protocols import amp

from ._arguments import BoundedInteger, HostName, Identifier, Seconds
from ._errors import COMMON_ERRORS

#: The most workers one C{ListWorkers} page holds.
MAX_PAGE = 500
#: The page size when C{ListWorkers} gives no C{limit}.
DEFAULT_PAGE = 100


class WorkerUpdate(amp.Command):
    """
    Insert or replace a worker: its address and its free job slots now.

    An accepted update sets the worker's free slots to C{capacity} (forgetting
    the answers given since the last one).  C{accepted} is C{False} for a stale
    C{seq} (lower than the last accepted) or a duplicate one (equal: it renews
    the worker's lease and ttl, nothing else).  C{ttl} > 0 removes the worker
    that many seconds after its last accepted or duplicate update.
    """

    commandName = b"WorkerUpdate"
    arguments = [
        (b"worker_id", Identifier()),
        (b"host", HostName()),
        (b"port", BoundedInteger(1, 65535)),
        (b"capacity", BoundedInteger(0)),
        (b"pool", Identifier(optional=True)),
        (b"seq", amp.Integer(optional=True)),
        (b"ttl", Seconds(optional=True)),
    ]
    response = [(b"accepted", amp.Boolean())]
    errors = dict(COMMON_ERRORS)


class WorkerGone(amp.Command):
    """
    Remove a worker at once.  C{known} is C{False} if it was not registered.
    """

    commandName = b"WorkerGone"
    arguments = [(b"worker_id", Identifier())]
    response = [(b"known", amp.Boolean())]
    errors = dict(COMMON_ERRORS)


class ListWorkers(amp.Command):
    """
    One page of the registered workers (of C{pool}, or of all pools), in
    C{worker_id} order after C{after}.  C{next_after} is present only when
    more follow: pass it as C{after} for the next page.  C{expires_in} is the
    seconds until the worker's earliest pending removal (ttl or lease grace),
    -1 when none is pending.
    """

    commandName = b"ListWorkers"
    arguments = [
        (b"pool", Identifier(optional=True)),
        (b"after", amp.Unicode(optional=True)),
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
