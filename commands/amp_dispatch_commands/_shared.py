"""
Commands that both listeners serve.
"""

from __future__ import annotations

from twisted.protocols import amp

from ._command import SchemaCommand
from ._errors import COMMON_ERRORS

#: The protocol version this schema describes; C{Stats} reports it.
PROTOCOL_VERSION = 1


class Stats(SchemaCommand):
    """
    Counters of the dispatcher as a whole.

    C{workers}: registered workers; C{free_slots}: their free slots added up;
    C{waiting}: C{NextWorker} calls waiting for a slot; C{dispatched}:
    C{NextWorker} answers since the dispatcher started; C{protocol}: the
    protocol version, L{PROTOCOL_VERSION}.
    """

    commandName = b"Stats"
    arguments = []
    response = [
        (b"workers", amp.Integer()),
        (b"free_slots", amp.Integer()),
        (b"waiting", amp.Integer()),
        (b"dispatched", amp.Integer()),
        (b"protocol", amp.Integer()),
    ]
    errors = dict(COMMON_ERRORS)
