"""
The dispatcher's options and service, shared by C{amp-dispatch serve} and the
C{twist amp-dispatch} plugin.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from ._logging import FORMATS, LEVELS, configure_under_twist
from ._server import DEFAULT_FRONTEND, DEFAULT_SCHEDULER, DispatcherService


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"must be a finite number >= 0, not {value!r}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, not {value!r}")
    return number


def _choice(choices: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    return check


class ServeOptions(usage.Options):
    """
    Options of the dispatcher service.
    """

    synopsis = "[--frontend EP] [--scheduler EP] [--lease-grace S] [--max-waiting N] ..."
    longdesc = (
        "Run the dispatcher with an in-memory queue. Front ends call NextWorker on the "
        "front-end listener; the scheduler sends worker updates to the scheduler listener. "
        "EP is any Twisted server endpoint string."
    )
    optParameters = [
        ["frontend", None, DEFAULT_FRONTEND, "Front-end listener (NextWorker, Stats)."],
        [
            "scheduler",
            None,
            DEFAULT_SCHEDULER,
            "Scheduler listener (WorkerUpdate, WorkerGone, ListWorkers, Stats).",
        ],
        [
            "lease-grace",
            None,
            30.0,
            "Seconds a worker outlives its scheduler connection (0: removed at once).",
            _non_negative_float,
        ],
        [
            "max-waiting",
            None,
            10_000,
            "Most NextWorker calls waiting for a free slot at once.",
            _positive_int,
        ],
        ["log-format", None, "console", "console or json.", _choice(FORMATS)],
        ["log-level", None, "info", "debug, info, warning or error.", _choice(LEVELS)],
    ]


# The names twist looks for in a ServiceMaker's module.
Options = ServeOptions


def make_service(options: ServeOptions, reactor: Any) -> DispatcherService:
    """
    Build the service from parsed options.
    """
    return DispatcherService(
        reactor,
        frontend=options["frontend"],
        scheduler=options["scheduler"],
        lease_grace=options["lease-grace"],
        max_waiting=options["max-waiting"],
    )


def makeService(options: ServeOptions) -> IService:
    """
    The C{twist} entry point: the service on the running reactor.
    """
    from twisted.internet import reactor

    configure_under_twist(options["log-format"], options["log-level"])
    return make_service(options, reactor)
