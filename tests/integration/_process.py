"""
The harness of the integration tests: the real C{amp-dispatch serve} process
and raw AMP connections to it.

L{DispatcherLauncher} starts C{python -m amp_dispatch serve --log-format json
--log-level debug} with C{reactor.spawnProcess}; an L{EventLog} collects its
stdout lines as parsed JSON events and answers "wait until an event matching
this appears" as a Deferred.  The listeners' ports are read from the
C{listening} events, so any free port (C{tcp:0}) works without races.

Every wait has a timeout (L{LIVENESS_TIMEOUT}): it is there so a broken server
fails the test instead of hanging it, never to assert how fast anything is.

This module deliberately imports neither C{amp_dispatch} nor
C{amp_dispatch_commands}: the contract guard uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols import amp
from twisted.python.failure import Failure

#: Seconds any one wait may take before the test fails: liveness, not timing.
LIVENESS_TIMEOUT = 15.0

#: A server endpoint string for a free loopback port.
ANY_PORT = "tcp:0:interface=127.0.0.1"

#: The loopback address every listener and client of the tests uses.
LOOPBACK = "127.0.0.1"

#: Runs C{amp-dispatch} (arguments after C{-c ...}) with a file descriptor
#: limit (soft, hard).
_LIMITED = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (%d, %d)); "
    "sys.argv[0] = 'amp-dispatch'; "
    "runpy.run_module('amp_dispatch', run_name='__main__')"
)

#: Seconds between two polls of L{poll_until}.
POLL_INTERVAL = 0.05

_T = TypeVar("_T")

#: One parsed log line of the dispatcher.
Event = Dict[str, Any]

#: What an awaited event must look like: fields it must have with these
#: values, or a predicate.
Matcher = Union[Mapping[str, Any], Callable[[Event], bool]]


class WaitTimedOut(AssertionError):
    """
    The awaited event (or exit) did not come within the liveness timeout.
    """


class ProcessGone(AssertionError):
    """
    The dispatcher process ended while an event was awaited.
    """


def matches(event: Event, match: Matcher) -> bool:
    """
    Whether C{event} has every field of C{match} with its value (or
    satisfies C{match}, a predicate).
    """
    if callable(match):
        return bool(match(event))
    return all(key in event and event[key] == value for key, value in match.items())


class EventLog(ProcessProtocol):
    """
    Collects a dispatcher process's stdout lines as JSON events (a line that
    is not JSON becomes C{{"event": None, "raw": line}}) and its stderr, and
    lets callers wait for an event or for the exit.
    """

    def __init__(self, reactor: Any, name: str) -> None:
        self._reactor = reactor
        self.name = name
        self.events: List[Event] = []
        self.stderr = b""
        self.exit_code: Optional[int] = None
        self.exit_signal: Optional[int] = None
        self.ended = False
        self._partial = b""
        self._waiters: List[Tuple[int, Matcher, Deferred[Event]]] = []
        self._end_waiters: List[Deferred[Optional[int]]] = []

    # -- ProcessProtocol ----------------------------------------------------

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        error = reason.value
        if isinstance(error, (ProcessDone, ProcessTerminated)):
            self.exit_code = error.exitCode
            self.exit_signal = getattr(error, "signal", None)
        self.ended = True
        waiters, self._waiters = self._waiters, []
        for _, match, waiting in waiters:
            waiting.errback(ProcessGone(f"{self.name} ended awaiting {match!r}\n{self.tail()}"))
        end_waiters, self._end_waiters = self._end_waiters, []
        for waiting_end in end_waiters:
            waiting_end.callback(self.exit_code)

    # -- reading --------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not text.strip():
            return
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            event = {"event": None, "raw": text}
        index = len(self.events)
        self.events.append(event)
        for waiter in list(self._waiters):
            since, match, waiting = waiter
            if index >= since and matches(event, match):
                self._waiters.remove(waiter)
                waiting.callback(event)

    def mark(self) -> int:
        """
        The position of the next event: pass it as C{since} to wait only for
        events logged from now on.
        """
        return len(self.events)

    def found(self, match: Matcher, since: int = 0) -> List[Event]:
        """
        The events logged so far (from position C{since}) that match.
        """
        return [event for event in self.events[since:] if matches(event, match)]

    def tail(self, lines: int = 30) -> str:
        """
        The last events and stderr, for failure messages.
        """
        shown = "\n".join(json.dumps(event) for event in self.events[-lines:])
        stderr = self.stderr.decode("utf-8", "replace")[-4000:]
        return f"--- last events of {self.name} ---\n{shown}\n--- stderr ---\n{stderr}"

    def wait_for(
        self, match: Matcher, *, since: int = 0, timeout: float = LIVENESS_TIMEOUT
    ) -> Deferred[Event]:
        """
        The first event from position C{since} that matches C{match}: at once
        if one was logged already, else when one is.

        @raise WaitTimedOut: (the Deferred fails) none within C{timeout}.
        @raise ProcessGone: (the Deferred fails) the process ended first.
        """
        for event in self.events[since:]:
            if matches(event, match):
                return succeed(event)
        if self.ended:
            return fail(ProcessGone(f"{self.name} ended; no event {match!r}\n{self.tail()}"))

        def cancel(waiting: Deferred[Event]) -> None:
            self._waiters[:] = [waiter for waiter in self._waiters if waiter[2] is not waiting]

        waiting: Deferred[Event] = Deferred(cancel)
        self._waiters.append((since, match, waiting))

        def timed_out(result: object, seconds: float) -> Failure:
            return Failure(WaitTimedOut(f"no event {match!r} within {seconds} s\n{self.tail()}"))

        waiting.addTimeout(timeout, self._reactor, onTimeoutCancel=timed_out)
        return waiting

    def wait_for_exit(self, timeout: float = LIVENESS_TIMEOUT) -> Deferred[Optional[int]]:
        """
        The exit code (C{None} if killed by a signal), once the process ended.

        @raise WaitTimedOut: (the Deferred fails) still running after
            C{timeout}.
        """
        if self.ended:
            return succeed(self.exit_code)

        def cancel(waiting: Deferred[Optional[int]]) -> None:
            if waiting in self._end_waiters:
                self._end_waiters.remove(waiting)

        waiting: Deferred[Optional[int]] = Deferred(cancel)
        self._end_waiters.append(waiting)

        def timed_out(result: object, seconds: float) -> Failure:
            return Failure(WaitTimedOut(f"{self.name} still running after {seconds} s"))

        waiting.addTimeout(timeout, self._reactor, onTimeoutCancel=timed_out)
        return waiting


class DispatcherProcess:
    """
    One running C{amp-dispatch serve} process and where it listens.
    """

    def __init__(
        self,
        log: EventLog,
        transport: IProcessTransport,
        arguments: Sequence[str],
        options: Mapping[str, Any],
    ) -> None:
        self.log = log
        self.transport = transport
        self.arguments = list(arguments)
        #: The keyword arguments of L{DispatcherLauncher.start} besides the endpoints.
        self.options = dict(options)
        self.ports: Dict[str, int] = {}

    @property
    def running(self) -> bool:
        return not self.log.ended

    @property
    def frontend_port(self) -> int:
        return self.ports["frontend"]

    @property
    def scheduler_port(self) -> int:
        return self.ports["scheduler"]

    @property
    def frontend(self) -> str:
        """
        The client endpoint string of the front-end listener.
        """
        return f"tcp:{LOOPBACK}:{self.frontend_port}"

    @property
    def scheduler(self) -> str:
        """
        The client endpoint string of the scheduler listener.
        """
        return f"tcp:{LOOPBACK}:{self.scheduler_port}"

    def same_ports(self) -> Dict[str, str]:
        """
        Server endpoint strings for listening again on this process's ports.
        """
        return {role: f"tcp:{port}:interface={LOOPBACK}" for role, port in self.ports.items()}

    @property
    def admin(self) -> str:
        """
        The base URL of the admin listener (C{http://127.0.0.1:PORT}).
        """
        return f"http://{LOOPBACK}:{self.ports['admin']}"

    async def listening(self) -> None:
        """
        Wait for every C{listening} event and learn the ports from them.
        """
        roles = ["frontend", "scheduler"]
        if self.arguments[self.arguments.index("--admin") + 1] != "none":
            roles.append("admin")
        for role in roles:
            event = await self.log.wait_for({"event": "listening", "role": role})
            self.ports[role] = int(event["port"])

    async def stop(self, signal: str = "TERM", timeout: float = LIVENESS_TIMEOUT) -> None:
        """
        Stop the process with C{signal} (C{"TERM"} or C{"INT"}) and check that
        it stopped cleanly: exit code 0 after logging C{stopping}, and no
        event of level error on the way.
        """
        if self.running:
            with contextlib.suppress(ProcessExitedAlready):
                self.transport.signalProcess(signal)
        try:
            code = await self.log.wait_for_exit(timeout)
        except WaitTimedOut:
            self.kill()
            raise
        assert code == 0, f"exit code {code} (signal {self.log.exit_signal})\n{self.log.tail()}"
        assert self.log.found({"event": "stopping"}), f"no 'stopping' event\n{self.log.tail()}"
        errors = self.log.found(lambda event: event.get("level") in ("error", "critical"))
        assert not errors, f"errors logged: {errors}\n{self.log.tail()}"
        assert b"Traceback" not in self.log.stderr, self.log.tail()

    def kill(self) -> None:
        """
        Kill the process at once (clean-up after a failure).
        """
        if self.running:
            with contextlib.suppress(OSError, ProcessExitedAlready):  # it ended meanwhile
                self.transport.signalProcess("KILL")


class DispatcherLauncher:
    """
    Starts dispatcher processes and stops (or at least kills) them all at
    the end of a test.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.processes: List[DispatcherProcess] = []

    async def start(
        self,
        *,
        frontend: str = ANY_PORT,
        scheduler: str = ANY_PORT,
        admin: str = ANY_PORT,
        lease_grace: Optional[float] = None,
        max_waiting: Optional[int] = None,
        more: Sequence[str] = (),
        fd_limit: Union[int, Tuple[int, int], None] = None,
    ) -> DispatcherProcess:
        """
        Start C{amp-dispatch serve} with JSON logs at level debug and wait
        until it listens on every endpoint (C{admin}: C{none} for none).

        @param more: more options of C{serve}.
        @param fd_limit: run it with this C{RLIMIT_NOFILE}, soft and hard (or
            C{(soft, hard)}).
        """
        start = ["-m", "amp_dispatch"]
        if fd_limit is not None:
            soft, hard = fd_limit if isinstance(fd_limit, tuple) else (fd_limit, fd_limit)
            start = ["-c", _LIMITED % (soft, hard)]
        arguments = [
            sys.executable,
            "-u",
            *start,
            "serve",
            "--frontend",
            frontend,
            "--scheduler",
            scheduler,
            "--admin",
            admin,
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ]
        if lease_grace is not None:
            arguments += ["--lease-grace", repr(float(lease_grace))]
        if max_waiting is not None:
            arguments += ["--max-waiting", str(max_waiting)]
        arguments += more
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        log = EventLog(self._reactor, f"dispatcher #{len(self.processes) + 1}")
        transport = self._reactor.spawnProcess(log, sys.executable, arguments, env=env)
        options = {
            "lease_grace": lease_grace,
            "max_waiting": max_waiting,
            "more": more,
            "fd_limit": fd_limit,
        }
        process = DispatcherProcess(log, transport, arguments, options)
        self.processes.append(process)
        try:
            await process.listening()
        except BaseException:
            process.kill()
            raise
        return process

    async def restart(self, process: DispatcherProcess) -> DispatcherProcess:
        """
        Stop C{process} (SIGTERM, checked) and start a new one on the same
        ports with the same options.
        """
        await process.stop()
        same = process.same_ports()
        return await self.start(
            frontend=same["frontend"],
            scheduler=same["scheduler"],
            admin=same.get("admin", "none"),
            **process.options,
        )

    async def stop_all(self) -> None:
        """
        Stop every process still running, checking each stops cleanly; kill
        any that does not.
        """
        errors: List[BaseException] = []
        for process in self.processes:
            if not process.running:
                continue
            try:
                await process.stop()
            except BaseException as e:
                process.kill()
                errors.append(e)
        if errors:
            raise errors[0]


class _Closing:
    """
    What both raw connections have: whether they are connected, and waiting
    for the loss of the connection (either side closing it).
    """

    transport: Any
    #: 1 while connected (as Twisted's protocols say it).
    connected: int = 0

    def __init__(self) -> None:
        super().__init__()
        self._lost: List[Deferred[None]] = []

    def _made(self) -> None:
        self.connected = 1

    def _gone(self) -> None:
        self.connected = 0
        waiters, self._lost = self._lost, []
        for waiting in waiters:
            waiting.callback(None)

    def when_lost(self, reactor: Any, timeout: float = LIVENESS_TIMEOUT) -> Deferred[None]:
        """
        Fires once the connection is lost (at once if it is).
        """
        if not self.connected:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._lost.append(waiting)
        waiting.addTimeout(timeout, reactor)
        return waiting

    async def close(self, reactor: Any) -> None:
        """
        Close the connection and wait until it is closed.
        """
        if self.connected and self.transport is not None:
            self.transport.loseConnection()
        await self.when_lost(reactor)


class RawAMP(_Closing, amp.AMP):
    """
    A plain AMP connection that tells when it is lost.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self._made()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self._gone()


class RawBytes(_Closing, Protocol):
    """
    A connection that sends raw bytes and keeps every box it receives, as
    parsed off the wire, for what a Twisted AMP client cannot send.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received = b""

    def connectionMade(self) -> None:
        self._made()

    def send(self, data: bytes) -> None:
        """
        Write C{data} as it is.
        """
        assert self.transport is not None
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone()

    def boxes(self) -> List[amp.AmpBox]:
        """
        The whole boxes received so far.
        """
        boxes: List[amp.AmpBox] = amp.parseString(self.received)
        return boxes


_Connected = TypeVar("_Connected", RawAMP, RawBytes)


async def _connect(reactor: Any, port: int, protocol: _Connected) -> _Connected:
    endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=int(LIVENESS_TIMEOUT))
    connecting: Deferred[_Connected] = connectProtocol(endpoint, protocol)
    connecting.addTimeout(LIVENESS_TIMEOUT, reactor)
    return await connecting


async def connect_raw(reactor: Any, port: int) -> RawBytes:
    """
    A raw byte connection to C{port} on the loopback address.
    """
    return await _connect(reactor, port, RawBytes())


async def connect_amp(reactor: Any, port: int) -> RawAMP:
    """
    A raw AMP connection to C{port} on the loopback address.
    """
    return await _connect(reactor, port, RawAMP())


async def probe_process(reactor: Any, *argv: str) -> Tuple[str, str, int]:
    """
    Run C{amp-dispatch probe ARGV} (as C{python -m amp_dispatch}) without
    blocking the reactor; its stdout, stderr and exit status.
    """
    return await command_process(reactor, "probe", *argv)


async def command_process(reactor: Any, *argv: str) -> Tuple[str, str, int]:
    """
    Run C{amp-dispatch ARGV} (as C{python -m amp_dispatch}), its output a
    pipe, without blocking the reactor; its stdout, stderr and exit status.
    """
    running = getProcessOutputAndValue(
        sys.executable,
        ["-m", "amp_dispatch", *argv],
        env=dict(os.environ),
        reactor=reactor,
    )
    running.addTimeout(LIVENESS_TIMEOUT, reactor)
    out, err, code = await running
    return out.decode("utf-8"), err.decode("utf-8"), code


def call_remote(
    reactor: Any, protocol: amp.AMP, command: Type[amp.Command], **arguments: Any
) -> Deferred[Dict[str, Any]]:
    """
    C{protocol.callRemote(command, **arguments)} with the liveness timeout.
    """
    answer: Deferred[Dict[str, Any]] = protocol.callRemote(command, **arguments)
    answer.addTimeout(LIVENESS_TIMEOUT, reactor)
    return answer


async def poll_until(
    reactor: Any,
    probe: Callable[[], Awaitable[_T]],
    done: Callable[[_T], bool],
    *,
    what: str,
    timeout: float = LIVENESS_TIMEOUT,
) -> _T:
    """
    Call C{probe} every L{POLL_INTERVAL} seconds until C{done} holds for its
    result, and return that result (for states no log event announces).

    @raise WaitTimedOut: C{done} still did not hold after C{timeout}.
    """
    deadline = reactor.seconds() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if reactor.seconds() >= deadline:
            raise WaitTimedOut(f"{what}: not reached within {timeout} s; last {value!r}")
        await deferLater(reactor, POLL_INTERVAL, lambda: None)
