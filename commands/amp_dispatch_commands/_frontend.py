"""
Commands a front end sends, on the front-end listener.
"""

from __future__ import annotations

from twisted.protocols import amp

from ._arguments import Identifier, Seconds
from ._command import SchemaCommand
from ._errors import COMMON_ERRORS, NO_WORKER_AVAILABLE, OVERLOADED, NoWorkerAvailable, Overloaded

#: The longest a C{NextWorker} may wait for a free slot, in seconds (an hour).
MAX_TIMEOUT = 3_600.0


class NextWorker(SchemaCommand):
    """
    Which worker takes my next job?

    Answers the head of C{pool}'s queue (the pool C{"default"} when left out):
    the worker with the most free slots, round robin among equals, taking one
    of its slots.  With no free slot in the pool it fails at once with
    L{NoWorkerAvailable}, or with C{timeout} > 0 waits that many seconds for
    one (at most L{MAX_TIMEOUT}), first come first served.  L{Overloaded}
    when too many calls wait, in all or from this connection.
    """

    commandName = b"NextWorker"
    arguments = [
        (b"pool", Identifier(optional=True)),
        (b"timeout", Seconds(MAX_TIMEOUT, optional=True)),
    ]
    response = [
        (b"worker_id", amp.Unicode()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
    ]
    errors = {
        **COMMON_ERRORS,
        NoWorkerAvailable: NO_WORKER_AVAILABLE,
        Overloaded: OVERLOADED,
    }
