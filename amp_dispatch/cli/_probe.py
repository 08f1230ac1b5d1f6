"""
C{amp-dispatch probe}: send one command to a dispatcher and print the answer,
for people (plain text) and scripts (C{--json}: one JSON object on stdout).

Exit status: 0 when the dispatcher answered (an update that was not accepted
and a removal of an unknown worker are answers too), 1 when the call failed
(cannot connect, no answer in time, or an error of the dispatcher such as
C{NO_WORKER_AVAILABLE} or C{INVALID_ARGUMENT}), 2 for a usage error (bad
options or arguments, a bad endpoint string).  On failure stdout stays empty
and stderr gets exactly one line, C{amp-dispatch probe: <why>}.

The calls are made with the public clients (L{FrontendClient},
L{SchedulerClient}), a refused connection failing them at once.  Updates go
out as they are given: the probe numbers nothing (a C{seq} is sent only with
C{--seq}), so a person's probe leaves no sequence number behind that would
make the scheduler's own updates look stale.
"""

from __future__ import annotations

import getopt
import json
import logging
import math
import re
import shlex
import sys
from typing import Any, Callable, Generic, List, Optional, Sequence, TypeVar

import structlog
from amp_dispatch_commands import ERROR_CODES, DispatchError
from attrs import asdict
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.protocols import amp
from twisted.python import usage

from ..client import (
    ClientError,
    DispatcherStats,
    DispatcherUnavailable,
    FrontendClient,
    SchedulerClient,
    Worker,
    WorkerPage,
    WrongListener,
)
from ..client._base import DispatcherClient
from ..client._connection import Endpoint
from ..client._defaults import CLIENT_CALL_TIMEOUT, CONNECT_FRONTEND, CONNECT_SCHEDULER
from ._version import VersionOption

T = TypeVar("T")

PROG = "amp-dispatch probe"

EXIT_FAILED = 1
EXIT_USAGE = 2

C = TypeVar("C", bound=DispatcherClient)
R = TypeVar("R")


class ProbeFailed(Exception):
    """
    The probe cannot give an answer: C{message} is the one line to show,
    C{code} the exit status.
    """

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- option values -------------------------------------------------------------


def _converted(name: str, convert: Callable[[str], T], kind: str) -> Callable[[str], T]:
    """
    The parser of option C{name}'s value by C{convert}, its error naming the
    option and the C{kind} of value it takes.
    """

    def parse(value: str) -> T:
        try:
            return convert(value)
        except ValueError:
            raise ValueError(f"{name} must be {kind}, not {value!r}") from None

    return parse


def _integer(name: str, description: str) -> List[Any]:
    """
    The declaration of option C{--name}, an integer, default none.
    """
    return [name, None, None, description, _converted(f"--{name}", int, "an integer")]


def _number(name: str, description: str) -> List[Any]:
    """
    The declaration of option C{--name}, a number, default none.
    """
    return [name, None, None, description, _converted(f"--{name}", float, "a number")]


def _call_timeout(value: str) -> float:
    number = _converted("--timeout", float, "a number")(value)
    if not number > 0 or math.isinf(number):
        raise ValueError(f"--timeout must be a finite number > 0, not {value!r}")
    return number


#: The start of a negative number (C{-1}, C{-0.5}, C{-.5}).
_NEGATIVE = re.compile(r"-\.?[0-9]")


def _positional_integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise usage.UsageError(f"{name} must be an integer, not {value!r}") from None


# -- rendering -----------------------------------------------------------------


def to_json(value: Any) -> str:
    """
    C{value} as one line of JSON.
    """
    return json.dumps(value, ensure_ascii=False)


def address(host: str, port: int) -> str:
    """
    C{host:port}, an IPv6 address in brackets.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_worker(worker: Worker, as_json: bool) -> str:
    """
    A C{NextWorker} answer: C{w1 10.0.0.1:9000}.
    """
    if as_json:
        return to_json(asdict(worker))
    return f"{worker.worker_id} {address(worker.host, worker.port)}"


def render_update(accepted: bool, as_json: bool) -> str:
    """
    A C{WorkerUpdate} answer.
    """
    if as_json:
        return to_json({"accepted": accepted})
    return "accepted" if accepted else "not accepted (stale or duplicate seq)"


def render_gone(known: bool, as_json: bool) -> str:
    """
    A C{WorkerGone} answer.
    """
    if as_json:
        return to_json({"known": known})
    return "removed" if known else "not registered"


def render_stats(stats: DispatcherStats, as_json: bool) -> str:
    """
    A C{Stats} answer: C{name: value} lines in the schema's order.
    """
    counters = asdict(stats)
    if as_json:
        return to_json(counters)
    return "\n".join(f"{name}: {value}" for name, value in counters.items())


def _expires(seconds: float) -> str:
    return "-" if seconds < 0 else f"{seconds:.1f}s"


_COLUMNS = ("worker_id", "pool", "address", "capacity", "free", "expires_in")
_RIGHT = frozenset({"capacity", "free", "expires_in"})


def render_workers(page: WorkerPage, as_json: bool) -> str:
    """
    C{ListWorkers} rows: an aligned table (C{expires_in} C{-} when no removal
    is pending) and, when more workers follow, a last line
    C{next: --after ID}.
    """
    if as_json:
        return to_json(asdict(page))
    if not page.workers:
        lines = ["no workers"]
    else:
        rows = [list(_COLUMNS)] + [
            [
                worker.worker_id,
                worker.pool,
                address(worker.host, worker.port),
                str(worker.capacity),
                str(worker.free),
                _expires(worker.expires_in),
            ]
            for worker in page.workers
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines = [
            "  ".join(
                cell.rjust(width) if column in _RIGHT else cell.ljust(width)
                for column, cell, width in zip(_COLUMNS, row, widths)
            ).rstrip()
            for row in rows
        ]
    if page.next_after is not None:
        lines.append(f"next: --after {shlex.quote(page.next_after)}")
    return "\n".join(lines)


def describe_error(error: BaseException, endpoint: str, listener: str) -> str:
    """
    The one line (without the C{amp-dispatch probe:} prefix) that says why a
    call to C{endpoint}, the C{listener} listener, failed.
    """
    if isinstance(error, DispatchError):
        code = ERROR_CODES.get(type(error), b"ERROR").decode("ascii")
        message = f"{code}: {error}"
    elif isinstance(error, WrongListener):
        message = f"UNHANDLED: {error.description} (is {endpoint} the {listener} listener?)"
    elif isinstance(error, amp.RemoteAmpError):
        code = error.errorCode.decode("ascii", "replace")
        message = f"{code}: {error.description}"
    elif isinstance(error, DispatcherUnavailable) and isinstance(error.__cause__, ConnectError):
        # "Connection was refused by other side: 111: Connection refused." -> its reason.
        reason = error.__cause__.args[0] if error.__cause__.args else ""
        message = f"cannot connect to {endpoint}: {reason}" if reason else str(error)
    elif isinstance(error, ClientError):
        message = str(error)
    else:
        # Not an error the client names: a TLS handshake or certificate
        # failure, for instance.  Say what it is and where it came from.
        kind = type(error)
        message = f"call to {endpoint} failed: {kind.__module__}.{kind.__qualname__}: {error}"
    return " ".join(message.split("\n")).strip()


# -- the clients ---------------------------------------------------------------


def endpoint_names(endpoint: str) -> List[str]:
    """
    The endpoint strings an option gives, separated by commas.
    """
    return [part for part in endpoint.split(",") if part]


def endpoints(endpoint: str) -> Endpoint:
    """
    The endpoints an option names: one, or several separated by commas (the
    replicas of a shared store, tried in turn).
    """
    each = endpoint_names(endpoint)
    return each if len(each) > 1 else endpoint


def frontend_client(reactor: Any, endpoint: str, call_timeout: float) -> FrontendClient:
    """
    The probe's client of the front-end listener: a refused connection
    fails the call at once (after each of several endpoints refused), as
    every client's first connection does.
    """
    return FrontendClient(reactor, endpoints(endpoint), call_timeout=call_timeout)


def scheduler_client(
    reactor: Any, endpoint: Endpoint, call_timeout: float, **options: Any
) -> SchedulerClient:
    """
    The probe's client of the scheduler listener: as L{frontend_client}'s
    (C{endpoint} may also be the endpoints themselves), and it sends
    updates as given (the probe numbers nothing).

    @param options: more options of L{SchedulerClient}.
    """
    where = endpoints(endpoint) if isinstance(endpoint, str) else endpoint
    return SchedulerClient(
        reactor, where, call_timeout=call_timeout, number_updates=False, **options
    )


# -- the subcommands -----------------------------------------------------------


class _Subcommand(VersionOption, usage.Options, Generic[C, R]):
    """
    What every subcommand has: the listener it talks to, its client, its
    calls, how their result is shown.
    """

    synopsis = ""
    optFlags = [["json", None, "Print the answer as one JSON object."]]

    def parseOptions(self, options: Optional[Sequence[str]] = None) -> None:
        """
        Parse C{options}, which may come before, between or after the
        positional arguments (C{--} ends the options).
        """
        super().parseOptions(None if options is None else self._options_first(options))

    def _options_first(self, arguments: Sequence[str]) -> List[str]:
        """
        C{arguments} with the options first, then C{--} and the positional
        arguments, for Twisted's parser (which stops at the first argument).
        A negative number is a value, never an option: a positional one
        (C{update w1 h 9000 -1}, refused then as the schema refuses it) or
        an option's (C{--seq -5}).
        """
        # Hidden from getopt as text no command line can hold (a NUL).
        numbers = {f"\0{i}": word for i, word in enumerate(arguments) if _NEGATIVE.match(word)}
        hidden = [f"\0{i}" if _NEGATIVE.match(word) else word for i, word in enumerate(arguments)]
        try:
            pairs, positional = getopt.gnu_getopt(hidden, self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        words: List[str] = []
        for name, value in pairs:
            value = numbers.get(value, value)
            if name.startswith("--"):
                takes_value = f"{name[2:]}=" in self.longOpt
                words.append(f"{name}={value}" if takes_value else name)
            else:
                words += [name, value] if f"{name[1:]}:" in self.shortOpt else [name]
        return [*words, "--", *(numbers.get(word, word) for word in positional)]

    def getSynopsis(self) -> str:
        name = self.parent.subCommand if self.parent is not None else "COMMAND"
        return f"Usage: {PROG} [options] {name} {self.synopsis}"

    def listener(self) -> str:
        """
        C{"frontend"} or C{"scheduler"}.
        """
        return "scheduler"

    def client(self, reactor: Any, endpoint: str, call_timeout: float) -> C:
        """
        A client of the listener at C{endpoint}, not started.

        @raise ValueError: (or C{TypeError}, C{KeyError}) a bad endpoint.
        """
        raise NotImplementedError()

    async def ask(self, client: C) -> R:
        """
        Make the subcommand's calls; what they give is what L{render} shows.
        """
        raise NotImplementedError()

    def render(self, result: R, as_json: bool) -> str:
        raise NotImplementedError()


class _SchedulerSubcommand(_Subcommand[SchedulerClient, R]):
    """
    A subcommand of the scheduler listener.
    """

    def client(self, reactor: Any, endpoint: str, call_timeout: float) -> SchedulerClient:
        return scheduler_client(reactor, endpoint, call_timeout)


class NextOptions(_Subcommand[FrontendClient, Worker]):
    """
    C{probe next}: C{NextWorker} on the front end (it takes a slot).
    """

    synopsis = "[--pool P] [--wait S]"
    optParameters = [
        ["pool", None, None, "The pool (default: the dispatcher's 'default')."],
        _number("wait", "Seconds to wait for a free slot (default: answer at once)."),
    ]

    def listener(self) -> str:
        return "frontend"

    def client(self, reactor: Any, endpoint: str, call_timeout: float) -> FrontendClient:
        return frontend_client(reactor, endpoint, call_timeout)

    async def ask(self, client: FrontendClient) -> Worker:
        return await client.next_worker(pool=self["pool"], timeout=self["wait"])

    def render(self, result: Worker, as_json: bool) -> str:
        return render_worker(result, as_json)


class UpdateOptions(_SchedulerSubcommand[bool]):
    """
    C{probe update}: C{WorkerUpdate} on the scheduler listener.
    """

    synopsis = "WORKER_ID HOST PORT CAPACITY [--pool P] [--seq N] [--ttl S]"
    optParameters = [
        ["pool", None, None, "The worker's pool (default: 'default')."],
        _integer("seq", "Sequence number of this update (default: none sent)."),
        _number("ttl", "Remove the worker this many seconds after its last update."),
    ]

    def parseArgs(  # type: ignore[override]
        self, worker_id: str, host: str, port: str, capacity: str
    ) -> None:
        self["worker_id"] = worker_id
        self["host"] = host
        self["port"] = _positional_integer("PORT", port)
        self["capacity"] = _positional_integer("CAPACITY", capacity)

    async def ask(self, client: SchedulerClient) -> bool:
        return await client.update(
            self["worker_id"],
            self["host"],
            self["port"],
            self["capacity"],
            pool=self["pool"],
            seq=self["seq"],
            ttl=self["ttl"],
        )

    def render(self, result: bool, as_json: bool) -> str:
        return render_update(result, as_json)


class GoneOptions(_SchedulerSubcommand[bool]):
    """
    C{probe gone}: C{WorkerGone} on the scheduler listener.
    """

    synopsis = "WORKER_ID"

    def parseArgs(self, worker_id: str) -> None:  # type: ignore[override]
        self["worker_id"] = worker_id

    async def ask(self, client: SchedulerClient) -> bool:
        return await client.gone(self["worker_id"])

    def render(self, result: bool, as_json: bool) -> str:
        return render_gone(result, as_json)


class StatsOptions(_Subcommand[DispatcherClient, DispatcherStats]):
    """
    C{probe stats}: C{Stats} on the front end, or the scheduler listener:
    with C{--scheduler}, or when only the probe's C{--scheduler EP} was
    given (then that is the dispatcher asked).
    """

    synopsis = "[--scheduler]"
    optFlags = [["scheduler", None, "Ask the scheduler listener instead of the front end."]]

    def listener(self) -> str:
        probe = self.parent
        only_scheduler = (
            probe is not None
            and probe["scheduler"] != CONNECT_SCHEDULER
            and probe["frontend"] == CONNECT_FRONTEND
        )
        return "scheduler" if self["scheduler"] or only_scheduler else "frontend"

    def client(self, reactor: Any, endpoint: str, call_timeout: float) -> DispatcherClient:
        make = scheduler_client if self.listener() == "scheduler" else frontend_client
        return make(reactor, endpoint, call_timeout)

    async def ask(self, client: DispatcherClient) -> DispatcherStats:
        return await client.stats()

    def render(self, result: DispatcherStats, as_json: bool) -> str:
        return render_stats(result, as_json)


class ListOptions(_SchedulerSubcommand[WorkerPage]):
    """
    C{probe list}: C{ListWorkers} on the scheduler listener, one page or all.
    """

    synopsis = "[--pool P] [--after ID] [--limit N] [--all]"
    optParameters = [
        ["pool", None, None, "Only this pool's workers (default: every pool)."],
        ["after", None, None, "Start after this worker id."],
        _integer("limit", "Workers per page (dispatcher default 100, at most 500)."),
    ]
    optFlags = [["all", None, "Follow the pages to the last (each page is one call)."]]

    async def ask(self, client: SchedulerClient) -> WorkerPage:
        pool, after, limit = self["pool"], self["after"], self["limit"]
        if self["all"]:
            return WorkerPage(await client.all_workers(pool, after, limit), None)
        return await client.list_workers(pool, after, limit)

    def render(self, result: WorkerPage, as_json: bool) -> str:
        return render_workers(result, as_json)


class ProbeOptions(VersionOption, usage.Options):
    """
    Options of the probe.
    """

    synopsis = "[--frontend EP] [--scheduler EP] [--timeout S] [--json] COMMAND ..."
    longdesc = (
        "Send one command to a dispatcher and print the answer; --json prints it as one "
        "JSON object. EP is a Twisted client endpoint string (tcp:HOST:PORT, "
        "tls:HOST:PORT, unix:PATH, ...), or several separated by commas (replicas on a "
        "shared store: each tried in turn). Exit status: 0 answered, 1 the call failed "
        "(one line on stderr), 2 usage error."
    )
    optFlags = [["json", None, "Print the answer as one JSON object."]]
    optParameters = [
        ["frontend", None, CONNECT_FRONTEND, "The front-end listener."],
        ["scheduler", None, CONNECT_SCHEDULER, "The scheduler listener."],
        [
            "timeout",
            None,
            CLIENT_CALL_TIMEOUT,
            "Seconds each call may take, connecting included.",
            _call_timeout,
        ],
    ]
    subCommands = [
        ["next", None, NextOptions, "Which worker takes my next job? (takes a slot)"],
        ["update", None, UpdateOptions, "Register or update a worker."],
        ["gone", None, GoneOptions, "Remove a worker."],
        ["stats", None, StatsOptions, "The dispatcher's counters."],
        ["list", None, ListOptions, "List registered workers."],
    ]

    def getSynopsis(self) -> str:
        return f"Usage: {PROG} {self.synopsis}"

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a command: next, update, gone, stats or list")

    @property
    def as_json(self) -> bool:
        """
        Whether C{--json} was given, before or after the command.
        """
        subcommand = self.subOptions
        return bool(self["json"] or (subcommand is not None and subcommand["json"]))


# -- running -------------------------------------------------------------------


def quiet_logging() -> None:
    """
    Keep the client machinery's log lines out of the probe's output: only
    warnings and errors, on stderr.
    """
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


async def probe(reactor: Any, options: ProbeOptions) -> str:
    """
    Make the probe's calls and return the text to print.

    @raise ProbeFailed: a call failed, or the endpoint string is bad.
    """
    subcommand: _Subcommand[Any, Any] = options.subOptions
    listener = subcommand.listener()
    endpoint: str = options[listener]
    try:
        client = subcommand.client(reactor, endpoint, options["timeout"])
    except (ValueError, TypeError, KeyError) as e:
        raise ProbeFailed(f"bad {listener} endpoint {endpoint!r}: {e}", EXIT_USAGE) from None
    # A value the schema refuses fails the call at once, before the
    # connection the start began is made: stopping cancels it.
    client.start()
    answered = Deferred.fromCoroutine(subcommand.ask(client))
    try:
        result = await answered
    except Exception as e:
        raise ProbeFailed(describe_error(e, endpoint, listener)) from None
    finally:
        await client.stop()
    return subcommand.render(result, options.as_json)


async def run_probe(reactor: Any, options: ProbeOptions) -> None:
    """
    Run the probe and print its answer; on failure print one line on stderr
    and exit with L{ProbeFailed.code}.
    """
    try:
        output = await probe(reactor, options)
    except ProbeFailed as e:
        print(f"{PROG}: {e.message}", file=sys.stderr)
        raise SystemExit(e.code) from None
    print(output)
