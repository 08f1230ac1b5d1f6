"""
The dispatcher's settings and their defaults, in one place: the command line
(C{amp-dispatch serve}, C{twist amp-dispatch}), the service, its store and
L{amp_dispatch.testing} all take their defaults from L{DEFAULT_CONFIG}.
"""

from __future__ import annotations

from typing import Optional

from attrs import field, frozen

#: Where the listeners listen by default: server endpoint strings (the
#: clients' defaults, client endpoint strings, are in L{amp_dispatch.client}).
LISTEN_FRONTEND = "tcp:8750:interface=127.0.0.1"
LISTEN_SCHEDULER = "tcp:8751:interface=127.0.0.1"
#: The admin listener (metrics, health), HTTP; C{none} turns it off.
LISTEN_ADMIN = "tcp:8752:interface=127.0.0.1"
NO_ADMIN = "none"

#: The most pools metrics label by name (the first seen); the others are
#: added up under L{OTHER_POOLS}.  Pools are the only label peers choose.
MAX_POOL_LABELS = 64
OTHER_POOLS = "(other)"


@frozen
class DispatcherConfig:
    """
    How a dispatcher listens and what it allows its peers.

    @ivar frontend: the front-end listener, a Twisted server endpoint string.
    @ivar scheduler: the scheduler listener, a Twisted server endpoint string.
    @ivar lease_grace: seconds a worker outlives the scheduler connection
        that holds it (0: removed at once).
    @ivar max_waiting: the most C{NextWorker} calls waiting at once.
    @ivar max_waiting_per_connection: the most of them from one connection.
    @ivar max_box_bytes: the longest box a peer may send; a longer one
        closes its connection.
    @ivar max_frontend_connections: the most front-end connections open at
        once (lowered to fit the file descriptor limit, see L{_limits}).
    @ivar max_scheduler_connections: the most scheduler connections open at
        once; their file descriptors are kept in reserve.
    @ivar idle_timeout: seconds a front-end connection may stay silent (no
        byte received, no call waiting) before it is closed (0: never).
    @ivar backlog: the listen backlog of both listeners (the kernel caps it
        at C{net.core.somaxconn}).
    @ivar store: where the workers live: C{memory} (this process), or a
        shared store's URL (C{redis://}, C{rediss://},
        C{redis+sentinel://}; see L{amp_dispatch.store._address}).
    @ivar store_password: the shared store's password (never in the URL).
    @ivar store_ca: over TLS, a PEM file of the CAs to trust for the store.
    @ivar heartbeat_interval: seconds between a replica's heartbeats (and
        reaps of expired workers) on a shared store.
    @ivar replica_timeout: seconds without a heartbeat after which the other
        replicas bury one (its waiting calls leave the line, its scheduler
        connections' workers get the lease grace).
    @ivar admin: the admin listener (C{/metrics}, C{/healthz}, C{/readyz}),
        a Twisted server endpoint string, or L{NO_ADMIN}.
    """

    frontend: str = LISTEN_FRONTEND
    scheduler: str = LISTEN_SCHEDULER
    lease_grace: float = 30.0
    max_waiting: int = 10_000
    max_waiting_per_connection: int = 1_000
    max_box_bytes: int = 16_384
    max_frontend_connections: int = 10_000
    max_scheduler_connections: int = 64
    idle_timeout: float = 300.0
    backlog: int = 1_024
    store: str = "memory"
    store_password: Optional[str] = field(default=None, repr=False)
    store_ca: Optional[str] = None
    heartbeat_interval: float = 1.0
    replica_timeout: float = 5.0
    admin: str = LISTEN_ADMIN


DEFAULT_CONFIG = DispatcherConfig()

#: The range of C{max_box_bytes}: room for the largest valid request (about
#: 1.3 KB: three 255-byte texts, numbers, a long tag) up to a megabyte.
MIN_BOX_BYTES = 4_096
MAX_BOX_BYTES = 1_048_576

__all__ = [
    "DEFAULT_CONFIG",
    "LISTEN_ADMIN",
    "LISTEN_FRONTEND",
    "LISTEN_SCHEDULER",
    "MAX_BOX_BYTES",
    "MAX_POOL_LABELS",
    "MIN_BOX_BYTES",
    "NO_ADMIN",
    "OTHER_POOLS",
    "DispatcherConfig",
]
