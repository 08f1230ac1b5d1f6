"""
The dispatcher's options and service, shared by C{amp-dispatch serve} and the
C{twist amp-dispatch} plugin.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, TypeVar

from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from ..server._config import (
    DEFAULT_CONFIG,
    MAX_BOX_BYTES,
    MIN_BOX_BYTES,
    NO_ADMIN,
    DispatcherConfig,
)
from ..server._service import DispatcherService
from ..store._address import PASSWORD_ENV, parse_store_url, read_store_password
from ._logging import FORMATS, LEVELS, configure_under_twist
from ._version import VersionOption

T = TypeVar("T")


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number, not {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"must be a finite number >= 0, not {value!r}")
    return number


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be an integer, not {value!r}") from None


def _positive_int(value: str) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError(f"must be at least 1, not {value!r}")
    return number


def _box_bytes(value: str) -> int:
    number = _integer(value)
    if not MIN_BOX_BYTES <= number <= MAX_BOX_BYTES:
        raise ValueError(f"must be within {MIN_BOX_BYTES}..{MAX_BOX_BYTES}, not {value!r}")
    return number


def _replica_timeout(value: str) -> float:
    number = _non_negative_float(value)
    if number < 2 * DEFAULT_CONFIG.heartbeat_interval:
        raise ValueError(
            f"must be at least {2 * DEFAULT_CONFIG.heartbeat_interval:g} "
            f"(two heartbeats), not {value!r}"
        )
    return number


def _choice(choices: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    return check


def _named(option: str, coerce: Callable[[str], T]) -> Callable[[str], T]:
    """
    C{coerce}, its refusal a usage error naming C{--option} (Twisted's own
    message names no option).
    """

    def check(value: str) -> T:
        try:
            return coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{option}: {e}") from None

    return check


def _naming(parameters: List[List[Any]]) -> List[List[Any]]:
    """
    C{optParameters} whose coercions name their option when they refuse.
    """
    return [
        [*parameter[:4], _named(parameter[0], parameter[4])] if len(parameter) > 4 else parameter
        for parameter in parameters
    ]


class ServeOptions(VersionOption, usage.Options):
    """
    Options of the dispatcher service.
    """

    synopsis = "[--frontend EP] [--scheduler EP] [--store URL] [--lease-grace S] ..."
    longdesc = (
        "Run the dispatcher. Front ends call NextWorker on the front-end listener; the "
        "scheduler sends worker updates to the scheduler listener. EP is any Twisted server "
        "endpoint string. The queue is in memory, or, with --store, in a Redis or Valkey "
        "server that any number of dispatchers (replicas) share; the store's password comes "
        f"from --store-password-file or ${PASSWORD_ENV}, never the command line."
    )
    optParameters = _naming(
        [
            ["frontend", None, DEFAULT_CONFIG.frontend, "Front-end listener (NextWorker, Stats)."],
            [
                "scheduler",
                None,
                DEFAULT_CONFIG.scheduler,
                "Scheduler listener (WorkerUpdate, WorkerGone, ListWorkers, Stats).",
            ],
            [
                "lease-grace",
                None,
                DEFAULT_CONFIG.lease_grace,
                "Seconds a worker outlives its scheduler connection (0: removed at once).",
                _non_negative_float,
            ],
            [
                "max-waiting",
                None,
                DEFAULT_CONFIG.max_waiting,
                "Most NextWorker calls waiting for a free slot at once.",
                _positive_int,
            ],
            [
                "max-waiting-per-connection",
                None,
                DEFAULT_CONFIG.max_waiting_per_connection,
                "Most NextWorker calls of one connection waiting at once.",
                _positive_int,
            ],
            [
                "max-box-bytes",
                None,
                DEFAULT_CONFIG.max_box_bytes,
                "Longest AMP box a peer may send; a longer one closes its connection.",
                _box_bytes,
            ],
            [
                "max-frontend-connections",
                None,
                DEFAULT_CONFIG.max_frontend_connections,
                "Most front-end connections open at once (lowered to fit the fd limit).",
                _positive_int,
            ],
            [
                "max-scheduler-connections",
                None,
                DEFAULT_CONFIG.max_scheduler_connections,
                "Most scheduler connections open at once (their fds kept in reserve).",
                _positive_int,
            ],
            [
                "idle-timeout",
                None,
                DEFAULT_CONFIG.idle_timeout,
                "Seconds a front-end connection may stay silent before it is closed (0: never).",
                _non_negative_float,
            ],
            [
                "backlog",
                None,
                DEFAULT_CONFIG.backlog,
                "Listen backlog of both listeners (endpoints without their own backlog=).",
                _positive_int,
            ],
            [
                "store",
                None,
                DEFAULT_CONFIG.store,
                "memory, or a shared store: redis://HOST:PORT/DB, rediss://... (TLS), "
                "redis+sentinel://HOST:PORT,HOST:PORT/PRIMARY-NAME.",
            ],
            [
                "store-password-file",
                None,
                None,
                f"File whose first line is the store's password (else ${PASSWORD_ENV}).",
            ],
            ["store-ca", None, None, "PEM file of the CAs to trust for a rediss:// store."],
            [
                "replica-timeout",
                None,
                DEFAULT_CONFIG.replica_timeout,
                "Seconds without a heartbeat after which other replicas of a shared store "
                "take over a replica's share (its waiting calls, its workers' leases).",
                _replica_timeout,
            ],
            [
                "admin",
                None,
                DEFAULT_CONFIG.admin,
                f"Admin listener, HTTP: /metrics (Prometheus), /healthz, /readyz "
                f"({NO_ADMIN}: off).",
            ],
            ["log-format", None, "console", "console or json.", _choice(FORMATS)],
            ["log-level", None, "info", "debug, info, warning or error.", _choice(LEVELS)],
        ]
    )

    def getSynopsis(self) -> str:
        return f"Usage: amp-dispatch serve {self.synopsis}"

    def postOptions(self) -> None:
        listeners = ["frontend", "scheduler"]
        if self["admin"] != NO_ADMIN:
            listeners.append("admin")
        for listener in listeners:
            try:
                # Made, not listened on: a bad string is refused here.
                serverFromString(None, self[listener])
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"--{listener}: {e}") from None
        try:
            password = read_store_password(self["store-password-file"], os.environ)
        except ValueError as e:
            raise usage.UsageError(f"--store-password-file: {e}") from None
        try:
            parse_store_url(self["store"], password)
        except ValueError as e:
            raise usage.UsageError(f"--store: {e}") from None
        self["store-password"] = password


# The names twist looks for in a ServiceMaker's module.
Options = ServeOptions


def make_service(options: ServeOptions, reactor: Any) -> DispatcherService:
    """
    Build the service from parsed options.
    """
    config = DispatcherConfig(
        frontend=options["frontend"],
        scheduler=options["scheduler"],
        lease_grace=options["lease-grace"],
        max_waiting=options["max-waiting"],
        max_waiting_per_connection=options["max-waiting-per-connection"],
        max_box_bytes=options["max-box-bytes"],
        max_frontend_connections=options["max-frontend-connections"],
        max_scheduler_connections=options["max-scheduler-connections"],
        idle_timeout=options["idle-timeout"],
        backlog=options["backlog"],
        store=options["store"],
        store_password=options["store-password"],
        store_ca=options["store-ca"],
        replica_timeout=options["replica-timeout"],
        admin=options["admin"],
    )
    return DispatcherService(reactor, config)


def makeService(options: ServeOptions) -> IService:
    """
    The C{twist} entry point: the service on the running reactor.
    """
    from twisted.internet import reactor

    configure_under_twist(options["log-format"], options["log-level"])
    return make_service(options, reactor)
