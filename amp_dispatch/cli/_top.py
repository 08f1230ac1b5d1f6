"""
C{amp-dispatch top}: a live view of a dispatcher, refreshed every
C{--interval} seconds from C{Stats} and C{ListWorkers} on its scheduler
listener; C{q} or Ctrl-C quits.  With C{--once}, or when standard output is
not a terminal, it prints one frame and exits.

Each refresh asks C{Stats} (the totals) and reads at most C{--max-workers}
workers from C{ListWorkers}, in pages of the protocol's largest (500), so a
dispatcher with 100,000 workers costs a bounded amount per refresh; the
pools and busiest workers are then from the first workers only, and the view
says so.

Exit status: 0 (quit, or the frame printed), 1 the dispatcher did not answer
the first refresh (one line on stderr: C{amp-dispatch top: <why>}), 2 usage
error.  Once it has answered, a failed refresh keeps the view up, showing
the error and the last figures while the client reconnects.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, List, Optional

from rich.console import Console
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.python import usage
from zope.interface import implementer

from ..client import DispatcherStats, RegisteredWorker, SchedulerClient
from ..client._defaults import CLIENT_CALL_TIMEOUT, CONNECT_SCHEDULER
from ._probe import EXIT_FAILED, describe_error, endpoint_names, scheduler_client
from ._serve import _naming, _positive_int
from ._top_figures import (
    CONNECTED,
    RECONNECTING,
    Connection,
    Frame,
    answers_per_second,
    busiest,
    pool_figures,
)
from ._top_terminal import Keys, Screen, stoppers
from ._top_view import render
from ._version import VersionOption

PROG = "amp-dispatch top"

#: The largest C{ListWorkers} page the protocol allows.
PAGE = 500

#: The longest wait between two attempts to reconnect.
RECONNECT_DELAY = 5.0

DEFAULT_MAX_WORKERS = 2000
#: The most C{--max-workers} allows: 200 pages a refresh.
MAX_MAX_WORKERS = 100_000
DEFAULT_BUSIEST = 10


def _max_workers(value: str) -> int:
    number = _positive_int(value)
    if number > MAX_MAX_WORKERS:
        raise ValueError(f"must be at most {MAX_MAX_WORKERS}, not {value!r}")
    return number


def _positive_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number, not {value!r}") from None
    if not number > 0 or math.isinf(number):
        raise ValueError(f"must be a finite number > 0, not {value!r}")
    return number


class TopOptions(VersionOption, usage.Options):
    """
    Options of C{amp-dispatch top}.
    """

    synopsis = "[--scheduler EP] [--interval S] [--once] [--max-workers N] [--busiest N]"
    longdesc = (
        "A live view of a dispatcher from its scheduler listener: per pool its workers, "
        "free slots and the answers handed out since their last updates; the dispatcher's "
        "totals (workers, free slots, waiting calls, answers per second); the busiest "
        "workers; the connection. q or Ctrl-C quits. With --once, or when standard output "
        "is not a terminal, it prints one frame and exits. EP is a Twisted client endpoint "
        "string, or several separated by commas (replicas on a shared store). Exit "
        "status: 0, 1 the dispatcher did not answer (one line on stderr), 2 usage error."
    )
    optFlags = [["once", None, "Print one frame and exit (implied when stdout is no terminal)."]]
    optParameters = _naming(
        [
            ["scheduler", None, CONNECT_SCHEDULER, "The scheduler listener."],
            ["interval", None, 1.0, "Seconds between refreshes.", _positive_number],
            [
                "max-workers",
                None,
                DEFAULT_MAX_WORKERS,
                "Workers read per refresh for the pools and the busiest (the totals "
                f"always count them all; at most {MAX_MAX_WORKERS}).",
                _max_workers,
            ],
            ["busiest", None, DEFAULT_BUSIEST, "Busiest workers shown.", _positive_int],
            [
                "timeout",
                None,
                CLIENT_CALL_TIMEOUT,
                "Seconds each call may take, connecting included.",
                _positive_number,
            ],
        ]
    )

    def getSynopsis(self) -> str:
        return f"Usage: {PROG} {self.synopsis}"

    def postOptions(self) -> None:
        names = endpoint_names(self["scheduler"])
        if not names:
            raise usage.UsageError("--scheduler: give at least one endpoint")
        for each in names:
            try:
                # Made, not connected: a bad string is refused here.
                clientFromString(None, each)
            except (ValueError, TypeError, KeyError) as e:
                raise usage.UsageError(f"--scheduler: {e}") from None


@implementer(IStreamClientEndpoint)
class NotingEndpoint:
    """
    C{endpoint}, named C{name}, that tells C{connected} its name each time
    a connection through it is made: which of several replicas answers.
    """

    def __init__(
        self, endpoint: IStreamClientEndpoint, name: str, connected: Callable[[str], None]
    ) -> None:
        self._endpoint = endpoint
        self._name = name
        self._connected = connected

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        connecting: Deferred[IProtocol] = self._endpoint.connect(protocolFactory)
        return connecting.addCallback(self._noted)

    def _noted(self, protocol: IProtocol) -> IProtocol:
        self._connected(self._name)
        return protocol

    def __str__(self) -> str:
        return self._name


class Refresher:
    """
    Reads the figures of one frame at a time from the scheduler listener
    through C{client}, and remembers what the next frame needs (the last
    totals, for the rate; the last figures, shown while reconnecting).

    @param clock: the clock the rate is timed by.
    @param where: where the client is connected (or connects).
    """

    def __init__(
        self,
        clock: Any,
        client: SchedulerClient,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        busiest: int = DEFAULT_BUSIEST,
        interval: float = 1.0,
        where: Optional[Callable[[], str]] = None,
    ) -> None:
        self._clock = clock
        self._client = client
        self._max_workers = max_workers
        self._busiest = busiest
        self._interval = interval
        self._where = where if where is not None else (lambda: client.endpoint)
        self._stats: Optional[DispatcherStats] = None
        self._stats_time = 0.0
        self._last: Optional[Frame] = None

    async def read_stats(self) -> DispatcherStats:
        """
        Ask C{Stats}; the rate of the next frame is counted from here.

        @raise Exception: the call's failure.
        """
        stats = await self._client.stats()
        self._stats, self._stats_time = stats, self._clock.seconds()
        return stats

    async def read(self) -> Frame:
        """
        Read a frame's figures: the totals, then up to C{max_workers}
        workers.

        @raise Exception: a call's failure.
        """
        before, before_time = self._stats, self._stats_time
        stats = await self.read_stats()
        rate = answers_per_second(before, before_time, stats, self._stats_time)
        workers, truncated = await self._workers()
        self._last = Frame(
            Connection(CONNECTED, self._where()),
            stats,
            rate,
            pool_figures(workers),
            busiest(workers, self._busiest),
            len(workers),
            truncated,
            self._interval,
        )
        return self._last

    async def refresh(self) -> Frame:
        """
        Read a frame's figures; once a frame was read, a failure gives the
        last frame's figures with the error instead.

        @raise Exception: the failure, if no frame was read yet.
        """
        try:
            return await self.read()
        except Exception as e:
            last = self._last
            if last is None:
                raise
            error = describe_error(e, self._client.endpoint, "scheduler")
            age = self._clock.seconds() - self._stats_time
            connection = Connection(RECONNECTING, self._client.endpoint, error, age)
            return Frame(
                connection,
                last.stats,
                None,
                last.pools,
                last.busiest,
                last.workers_read,
                last.truncated,
                self._interval,
            )

    async def _workers(self) -> tuple[List[RegisteredWorker], bool]:
        """
        The first C{max_workers} workers in id order, and whether more follow.
        """
        workers: List[RegisteredWorker] = []
        after: Optional[str] = None
        while len(workers) < self._max_workers:
            limit = min(PAGE, self._max_workers - len(workers))
            page = await self._client.list_workers(after=after, limit=limit)
            workers += page.workers
            after = page.next_after
            if after is None:
                return workers, False
        return workers, True


async def once(clock: Any, refresher: Refresher, interval: float) -> Frame:
    """
    One frame, its rate counted over C{interval} seconds: C{Stats}, then,
    C{interval} later, the frame.

    @raise Exception: a call's failure.
    """
    await refresher.read_stats()
    await deferLater(clock, interval, lambda: None)
    return await refresher.read()


async def live(
    reactor: Any,
    refresher: Refresher,
    interval: float,
    screen: Any,
    keys: Optional[Callable[[Callable[[str], None]], Any]] = None,
) -> None:
    """
    Draw a frame on C{screen} every C{interval} seconds until C{q} is
    pressed (or the reactor shuts down: Ctrl-C); the screen and terminal
    are restored either way.

    @param screen: shows renderables (L{Screen.show}) and is stopped.
    @param keys: makes the terminal's key reader (L{Keys}) from the
        function each key goes to; C{None} when standard input is no
        terminal (then only Ctrl-C quits).
    @raise Exception: the failure of the first refresh.
    """
    first = await refresher.read()
    quit: Deferred[None] = Deferred()

    def pressed(key: str) -> None:
        if key in "qQ" and not quit.called:
            quit.callback(None)

    def show(frame: Frame) -> None:
        screen.show(render(frame, interactive=True))

    def refreshed() -> Deferred[None]:
        return Deferred.fromCoroutine(refresher.refresh()).addCallback(show)

    def failed(reason: Any) -> None:
        if not quit.called:
            quit.errback(reason)

    loop = LoopingCall(refreshed)
    loop.clock = reactor
    reader = keys(pressed) if keys is not None else None

    def stop_loop() -> None:
        if loop.running:
            loop.stop()

    stop = stoppers(stop_loop, *([reader.stop] if reader is not None else []), screen.stop)
    shutting_down = []

    def shutdown() -> None:
        # Ctrl-C (or SIGTERM): quit as q does, screen and terminal restored
        # before the reactor stops.
        shutting_down.append(True)
        pressed("q")

    trigger = reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    try:
        show(first)
        if reader is not None:
            reader.start()
        loop.start(interval, now=False).addErrback(failed)
        await quit
    finally:
        if not shutting_down:
            reactor.removeSystemEventTrigger(trigger)
        stop()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def make_client(reactor: Any, options: TopOptions) -> tuple[SchedulerClient, Callable[[], str]]:
    """
    The client of the scheduler listener the options name, and what tells
    which of its endpoints it is connected through.
    """
    names = endpoint_names(options["scheduler"])
    current = [", ".join(names)]

    def connected(name: str) -> None:
        current[0] = name

    noting = [NotingEndpoint(clientFromString(reactor, name), name, connected) for name in names]
    # Reconnect at least every RECONNECT_DELAY seconds (not the default
    # backoff's minute), so the view comes back soon after the dispatcher.
    retry = backoffPolicy(maxDelay=RECONNECT_DELAY)
    client = scheduler_client(reactor, list(noting), options["timeout"], retry_policy=retry)
    return client, lambda: current[0]


async def run_top(reactor: Any, options: TopOptions) -> None:
    """
    Run C{amp-dispatch top} as the options say; when the dispatcher does not
    answer the first refresh, print one line on stderr and exit with 1.
    """
    client, where = make_client(reactor, options)
    interval = options["interval"]
    refresher = Refresher(
        reactor,
        client,
        max_workers=options["max-workers"],
        busiest=options["busiest"],
        interval=interval,
        where=where,
    )
    console = Console(file=sys.stdout)
    client.start()
    try:
        if options["once"] or not _is_terminal(sys.stdout):
            frame = await once(reactor, refresher, interval)
            console.print(render(frame))
        else:
            keys = None
            if _is_terminal(sys.stdin):
                fd = sys.stdin.fileno()
                keys = lambda pressed: Keys(reactor, fd, pressed)  # noqa: E731
            await live(reactor, refresher, interval, Screen(console), keys)
    except Exception as e:
        print(f"{PROG}: {describe_error(e, client.endpoint, 'scheduler')}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    finally:
        await client.stop()


__all__ = ["NotingEndpoint", "Refresher", "TopOptions", "live", "once", "run_top"]
