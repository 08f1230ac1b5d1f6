"""
The clients' defaults, in one place: where they connect when told nothing
else (a dispatcher run with its defaults on this machine), how long a call
may take, and what they allow a dispatcher.

The endpoints are client endpoint strings, what to connect to; the
dispatcher's own defaults for where to listen are
L{amp_dispatch.server._config.LISTEN_FRONTEND} and C{LISTEN_SCHEDULER}.
"""

from __future__ import annotations

#: The front-end listener of a dispatcher run with defaults on this machine.
CONNECT_FRONTEND = "tcp:127.0.0.1:8750"

#: Its scheduler listener.
CONNECT_SCHEDULER = "tcp:127.0.0.1:8751"

#: Seconds a call may take, waiting for a connection included.
CLIENT_CALL_TIMEOUT = 5.0

#: The longest box the clients accept from a dispatcher: a C{ListWorkers}
#: page is one AMP value of up to 64 KiB.
CLIENT_MAX_BOX_BYTES = 131_072

#: Seconds a client connection may go without sending before it sends a
#: C{Stats} to keep it open: well under the dispatcher's default
#: C{idle_timeout}.
CLIENT_KEEPALIVE = 60.0

__all__ = [
    "CLIENT_CALL_TIMEOUT",
    "CLIENT_KEEPALIVE",
    "CLIENT_MAX_BOX_BYTES",
    "CONNECT_FRONTEND",
    "CONNECT_SCHEDULER",
]
