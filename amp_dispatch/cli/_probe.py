"""
C{amp-dispatch probe}: send one command to a dispatcher and print the answer,
for people (plain text) and scripts (C{--json}: one JSON object on stdout).

Exit status: 0 when the dispatcher answered (an update that was not accepted
and a removal of an unknown worker are answers too), 1 when the call failed
(cannot connect, no answer in time, or an error of the dispatcher such as
C{NO_WORKER_AVAILABLE} or C{INVALID_ARGUMENT}), 2 for a usage error (bad
options or arguments, a bad endpoint string).  On failure stdout stays empty
and stderr gets exactly one line, C{amp-dispatch probe: <why>}.

Updates go out as they are given: the probe numbers nothing (a C{seq} is sent
only with C{--seq}), so a person's probe leaves no sequence number behind that
would make the scheduler's own updates look stale.
"""

from __future__ import annotations

import getopt
import json
import logging
import math
import shlex
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

import structlog
from amp_dispatch_commands import (
    ERROR_CODES,
    MAX_PAGE,
    DispatchError,
    ListWorkers,
    NextWorker,
    Stats,
    WorkerGone,
    WorkerUpdate,
)
from twisted.internet.error import ConnectError
from twisted.protocols import amp
from twisted.python import usage

from ..client._arguments import Answer, Arguments, check_arguments
from ..client._connection import DispatcherConnection
from ..client._defaults import CLIENT_CALL_TIMEOUT, CONNECT_FRONTEND, CONNECT_SCHEDULER
from ..client._errors import ClientError, DispatcherUnavailable

PROG = "amp-dispatch probe"

EXIT_FAILED = 1
EXIT_USAGE = 2


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


def _integer(name: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {value!r}") from None

    return parse


def _number(name: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {value!r}") from None

    return parse


def _call_timeout(value: str) -> float:
    number = _number("--timeout")(value)
    if not number > 0 or math.isinf(number):
        raise ValueError(f"--timeout must be a finite number > 0, not {value!r}")
    return number


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


def render_worker(answer: Answer, as_json: bool) -> str:
    """
    A C{NextWorker} answer: C{w1 10.0.0.1:9000}.
    """
    worker = {name: answer[name] for name in ("worker_id", "host", "port")}
    if as_json:
        return to_json(worker)
    return f"{worker['worker_id']} {address(worker['host'], worker['port'])}"


def render_update(answer: Answer, as_json: bool) -> str:
    """
    A C{WorkerUpdate} answer.
    """
    accepted = bool(answer["accepted"])
    if as_json:
        return to_json({"accepted": accepted})
    return "accepted" if accepted else "not accepted (stale or duplicate seq)"


def render_gone(answer: Answer, as_json: bool) -> str:
    """
    A C{WorkerGone} answer.
    """
    known = bool(answer["known"])
    if as_json:
        return to_json({"known": known})
    return "removed" if known else "not registered"


def render_stats(answer: Answer, as_json: bool) -> str:
    """
    A C{Stats} answer: C{name: value} lines in the schema's order.
    """
    names = [name.decode("ascii") for name, _ in Stats.response]
    ordered = {name: answer[name] for name in names if name in answer}
    ordered.update((name, value) for name, value in answer.items() if name not in ordered)
    if as_json:
        return to_json(ordered)
    return "\n".join(f"{name}: {value}" for name, value in ordered.items())


def _expires(seconds: float) -> str:
    return "-" if seconds < 0 else f"{seconds:.1f}s"


_COLUMNS = ("worker_id", "pool", "address", "capacity", "free", "expires_in")
_RIGHT = frozenset({"capacity", "free", "expires_in"})


def render_workers(workers: Sequence[Answer], next_after: Optional[str], as_json: bool) -> str:
    """
    C{ListWorkers} rows: an aligned table (C{expires_in} C{-} when no removal
    is pending) and, when more workers follow, a last line
    C{next: --after ID}.
    """
    if as_json:
        return to_json({"workers": [dict(row) for row in workers], "next_after": next_after})
    if not workers:
        lines = ["no workers"]
    else:
        rows = [list(_COLUMNS)] + [
            [
                str(row["worker_id"]),
                str(row["pool"]),
                address(row["host"], row["port"]),
                str(row["capacity"]),
                str(row["free"]),
                _expires(row["expires_in"]),
            ]
            for row in workers
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines = [
            "  ".join(
                cell.rjust(width) if column in _RIGHT else cell.ljust(width)
                for column, cell, width in zip(_COLUMNS, row, widths)
            ).rstrip()
            for row in rows
        ]
    if next_after is not None:
        lines.append(f"next: --after {shlex.quote(next_after)}")
    return "\n".join(lines)


def describe_error(error: BaseException, endpoint: str, listener: str) -> str:
    """
    The one line (without the C{amp-dispatch probe:} prefix) that says why a
    call to C{endpoint}, the C{listener} listener, failed.
    """
    if isinstance(error, DispatchError):
        code = ERROR_CODES.get(type(error), b"ERROR").decode("ascii")
        message = f"{code}: {error}"
    elif isinstance(error, amp.UnhandledCommand):
        # Rebuilt at the caller as UnhandledCommand(code, description).
        description = error.args[1] if len(error.args) > 1 else str(error)
        message = f"UNHANDLED: {description} (is {endpoint} the {listener} listener?)"
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


# -- the subcommands -----------------------------------------------------------


class _Subcommand(usage.Options):
    """
    What every subcommand has: the listener it talks to, its call, how its
    answer is shown.
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
        """
        try:
            pairs, positional = getopt.gnu_getopt(list(arguments), self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        words: List[str] = []
        for name, value in pairs:
            if name.startswith("--"):
                takes_value = f"{name[2:]}=" in self.longOpt
                words.append(f"{name}={value}" if takes_value else name)
            else:
                words += [name, value] if f"{name[1:]}:" in self.shortOpt else [name]
        return [*words, "--", *positional]

    def getSynopsis(self) -> str:
        name = self.parent.subCommand if self.parent is not None else "COMMAND"
        return f"Usage: {PROG} [options] {name} {self.synopsis}"

    def listener(self) -> str:
        """
        C{"frontend"} or C{"scheduler"}.
        """
        return "scheduler"

    def request(self) -> Tuple[Type[amp.Command], Arguments]:
        """
        The (first) command to send and its arguments.
        """
        raise NotImplementedError()

    async def ask(self, connection: DispatcherConnection) -> Any:
        """
        Send the command and return what L{render} shows.
        """
        command, arguments = self.request()
        return await connection.call(command, arguments)

    def render(self, result: Any, as_json: bool) -> str:
        raise NotImplementedError()


class NextOptions(_Subcommand):
    """
    C{probe next}: C{NextWorker} on the front end (it takes a slot).
    """

    synopsis = "[--pool P] [--wait S]"
    optParameters = [
        ["pool", None, None, "The pool (default: the dispatcher's 'default')."],
        [
            "wait",
            None,
            None,
            "Seconds to wait for a free slot (default: answer at once).",
            _number("--wait"),
        ],
    ]

    def listener(self) -> str:
        return "frontend"

    def request(self) -> Tuple[Type[amp.Command], Arguments]:
        return NextWorker, {"pool": self["pool"], "timeout": self["wait"]}

    async def ask(self, connection: DispatcherConnection) -> Any:
        command, arguments = self.request()
        return await connection.call(command, arguments, wait=self["wait"])

    def render(self, result: Any, as_json: bool) -> str:
        return render_worker(result, as_json)


class UpdateOptions(_Subcommand):
    """
    C{probe update}: C{WorkerUpdate} on the scheduler listener.
    """

    synopsis = "WORKER_ID HOST PORT CAPACITY [--pool P] [--seq N] [--ttl S]"
    optParameters = [
        ["pool", None, None, "The worker's pool (default: 'default')."],
        [
            "seq",
            None,
            None,
            "Sequence number of this update (default: none sent).",
            _integer("--seq"),
        ],
        [
            "ttl",
            None,
            None,
            "Remove the worker this many seconds after its last update.",
            _number("--ttl"),
        ],
    ]

    def parseArgs(  # type: ignore[override]
        self, worker_id: str, host: str, port: str, capacity: str
    ) -> None:
        self["worker_id"] = worker_id
        self["host"] = host
        self["port"] = _positional_integer("PORT", port)
        self["capacity"] = _positional_integer("CAPACITY", capacity)

    def request(self) -> Tuple[Type[amp.Command], Arguments]:
        names = ("worker_id", "host", "port", "capacity", "pool", "seq", "ttl")
        return WorkerUpdate, {name: self[name] for name in names}

    def render(self, result: Any, as_json: bool) -> str:
        return render_update(result, as_json)


class GoneOptions(_Subcommand):
    """
    C{probe gone}: C{WorkerGone} on the scheduler listener.
    """

    synopsis = "WORKER_ID"

    def parseArgs(self, worker_id: str) -> None:  # type: ignore[override]
        self["worker_id"] = worker_id

    def request(self) -> Tuple[Type[amp.Command], Arguments]:
        return WorkerGone, {"worker_id": self["worker_id"]}

    def render(self, result: Any, as_json: bool) -> str:
        return render_gone(result, as_json)


class StatsOptions(_Subcommand):
    """
    C{probe stats}: C{Stats} on the front end, or the scheduler listener.
    """

    synopsis = "[--scheduler]"
    optFlags = [["scheduler", None, "Ask the scheduler listener instead of the front end."]]

    def listener(self) -> str:
        return "scheduler" if self["scheduler"] else "frontend"

    def request(self) -> Tuple[Type[amp.Command], Arguments]:
        return Stats, {}

    def render(self, result: Any, as_json: bool) -> str:
        return render_stats(result, as_json)


class ListOptions(_Subcommand):
    """
    C{probe list}: C{ListWorkers} on the scheduler listener, one page or all.
    """

    synopsis = "[--pool P] [--after ID] [--limit N] [--all]"
    optParameters = [
        ["pool", None, None, "Only this pool's workers (default: every pool)."],
        ["after", None, None, "Start after this worker id."],
        [
            "limit",
            None,
            None,
            "Workers per page (dispatcher default 100, at most 500).",
            _integer("--limit"),
        ],
    ]
    optFlags = [["all", None, "Follow the pages to the last (each page is one call)."]]

    def request(self) -> Tuple[Type[amp.Command], Arguments]:
        return ListWorkers, {"pool": self["pool"], "after": self["after"], "limit": self["limit"]}

    async def ask(self, connection: DispatcherConnection) -> Any:
        command, arguments = self.request()
        if self["all"] and arguments["limit"] is None:
            arguments["limit"] = MAX_PAGE
        workers: List[Answer] = []
        while True:
            answer = await connection.call(command, arguments)
            workers.extend(answer["workers"])
            next_after: Optional[str] = answer.get("next_after")
            if next_after is None or not self["all"]:
                return workers, next_after
            arguments["after"] = next_after

    def render(self, result: Any, as_json: bool) -> str:
        workers, next_after = result
        return render_workers(workers, next_after, as_json)


class ProbeOptions(usage.Options):
    """
    Options of the probe.
    """

    synopsis = "[--frontend EP] [--scheduler EP] [--timeout S] [--json] COMMAND ..."
    longdesc = (
        "Send one command to a dispatcher and print the answer; --json prints it as one "
        "JSON object. EP is a Twisted client endpoint string (tcp:HOST:PORT, "
        "tls:HOST:PORT, unix:PATH, ...). Exit status: 0 answered, 1 the call failed "
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
    Send the probe's command and return the text to print.

    @raise ProbeFailed: the call failed, or the endpoint string is bad.
    """
    subcommand: _Subcommand = options.subOptions
    listener = subcommand.listener()
    endpoint: str = options[listener]
    command, arguments = subcommand.request()
    try:
        # Refuse what the schema refuses before connecting at all.
        check_arguments(command, arguments)
    except DispatchError as e:
        raise ProbeFailed(describe_error(e, endpoint, listener)) from None
    try:
        connection = DispatcherConnection(
            reactor,
            endpoint,
            role=listener,
            call_timeout=options["timeout"],
            fail_after_failures=1,
        )
    except (ValueError, TypeError, KeyError) as e:
        raise ProbeFailed(f"bad {listener} endpoint {endpoint!r}: {e}", EXIT_USAGE) from None
    connection.start()
    try:
        result = await subcommand.ask(connection)
    except Exception as e:
        raise ProbeFailed(describe_error(e, endpoint, listener)) from None
    finally:
        await connection.stop()
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
