"""
The machinery both dispatcher clients share: one kept-up AMP connection to one
listener, and calls over it with a deadline and clear client-side errors.

A L{DispatcherConnection} runs a L{ClientService} (exponential backoff, the
client's reactor as its clock) that keeps one connection up.  L{call} checks a
command's arguments before anything else (a bad value fails the call with the
schema's L{InvalidArgument}, naming the field, without waiting for a
connection), waits for the connection, sends, and consumes the answer: AMP
drops a connection whose call result ends unhandled.  Every call has one
deadline from the moment it is made: if it runs out before a connection came
the call fails with L{DispatcherUnavailable}, if it runs out after the call was
sent it fails with L{CallTimedOut} (a late answer is then ignored).

B{Fast calls.}  Twisted's generic AMP machinery (C{callRemote}: a Command and
argument objects per call; parsing through L{Int16StringReceiver};
L{BoxDispatcher}; a L{DelayedCall} per call from C{addTimeout}) costs tens of
microseconds of client CPU per call.  A command described by a L{FastCommand}
can instead be sent with L{DispatcherConnection.fast_call} while the
connection is up: its box (the same bytes C{callRemote} would write: keys
sorted, the tag from the protocol's own counter) is pre-encoded but for the
tag, and its Deferred waits in the protocol's own table.  The protocol reads
boxes with L{read_box}: an answer or error to a fast call is resolved there
(the answer parsed by the command's C{parse}, an error mapped to the
command's error classes as C{callRemote} does), every other box goes to the
stock C{ampBoxReceived}, so generic calls share the connection.  Fast calls
keep the generic calls' deadlines and errors, but all of one connection's
deadlines share one timer, armed for the earliest.  A fast call is only made
on a live connection; without one the caller uses L{DispatcherConnection.call}.
"""

from __future__ import annotations

from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    NoReturn,
    Optional,
    Tuple,
    Type,
    TypeVar,
    cast,
)

import structlog
from amp_dispatch_commands import InvalidArgument, Stats
from attrs import define, frozen
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectionClosed, ConnectionLost
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.python.failure import Failure

from ..protocol._addresses import describe, no_delay
from ..protocol._framing import (
    Box,
    BoxReader,
    FramingError,
    encode_pair,
    pack_length,
)
from ..protocol._peerlog import Warnings
from ..server._config import CLIENT_KEEPALIVE, CLIENT_MAX_BOX_BYTES

_log = structlog.get_logger("amp_dispatch.client")

#: The arguments of one call, by Python name; C{None} leaves an optional one out.
Arguments = Dict[str, Any]

#: A command's parsed answer, by Python name.
Answer = Dict[str, Any]

#: C{AMP.callRemote}, typed: (protocol, command, **arguments) -> answer.
call_remote = cast(Callable[..., "Deferred[Answer]"], amp.AMP.callRemote)

_SelfClient = TypeVar("_SelfClient", bound="DispatcherClient")

T = TypeVar("T")


class ClientError(Exception):
    """
    Base class of the errors a client raises itself (they never cross the
    wire; the dispatcher's own errors are the schema's L{DispatchError}s).
    """


class DispatcherUnavailable(ClientError):
    """
    The call could not reach the dispatcher: no connection came within the
    call's timeout, connecting failed (with C{fail_after_failures}), the
    connection was lost before the answer came, or the client was stopped.
    The dispatcher may or may not have acted on a call that was sent.
    """


class CallTimedOut(ClientError):
    """
    The call was sent but no answer came within its timeout.  The dispatcher
    may or may not have acted on it; its late answer is ignored.
    """


@frozen
class DispatcherStats:
    """
    A C{Stats} answer: counters of the dispatcher as a whole.

    @ivar workers: registered workers.
    @ivar free_slots: their free slots added up.
    @ivar waiting: C{NextWorker} calls waiting for a slot.
    @ivar dispatched: C{NextWorker} answers since the dispatcher started.
    @ivar protocol: the dispatcher's protocol version.
    """

    workers: int
    free_slots: int
    waiting: int
    dispatched: int
    protocol: int


def check_arguments(command: Type[amp.Command], arguments: Arguments) -> Arguments:
    """
    Check C{arguments} against C{command}'s argument types as sending would.

    @return: the arguments to send: those not C{None}.
    @raise InvalidArgument: a required argument is missing or a value is out
        of range; the message names the field and why, as the dispatcher's
        C{INVALID_ARGUMENT} answers do.
    """
    sendable = {name: value for name, value in arguments.items() if value is not None}
    for wire_name, argument in command.arguments:
        name = wire_name.decode("ascii")
        if name not in sendable:
            if not argument.optional:
                raise InvalidArgument(f"{name}: missing")
            continue
        try:
            argument.toStringProto(sendable[name], None)
        except (ValueError, TypeError, AttributeError, OverflowError, UnicodeError) as e:
            raise InvalidArgument(f"{name}: {e}") from None
    return sendable


def _peer(protocol: object) -> str:
    """
    The peer address of C{protocol}'s transport, for logs.
    """
    transport = getattr(protocol, "transport", None)
    return describe(transport.getPeer()) if transport is not None else "?"


class FastCommand(Generic[T]):
    """
    How to make one command's calls without Twisted's generic call machinery
    (see L{DispatcherConnection.fast_call}).

    @ivar command: the command (its name, and its errors by code).
    @ivar name: its name, for messages.
    @ivar parse: builds the call's result from the answer box (its values as
        bytes, by wire name); what it raises fails the call.
    @ivar prefix: the encoded C{_command} key and value: sorted keys put
        C{_ask} before and the command's arguments after it.
    """

    def __init__(self, command: Type[amp.Command], parse: Callable[[Box], T]) -> None:
        self.command = command
        self.name = command.commandName.decode("ascii")
        self.parse = parse
        self.prefix = encode_pair(amp.COMMAND, command.commandName)
        self.errors: Dict[bytes, Type[Exception]] = command.reverseErrors  # type: ignore[attr-defined]

    def error(self, box: Box) -> Exception:
        """
        The exception an C{_error} box answering this command stands for, as
        C{callRemote} makes it: the command's error class for a code it
        declares, L{amp.UnhandledCommand} for AMP's C{UNHANDLED}, else
        L{amp.UnknownRemoteError}.
        """
        code = box[amp.ERROR_CODE]
        description = box[amp.ERROR_DESCRIPTION].decode("utf-8", "replace")
        protocol_error = amp.PROTOCOL_ERRORS.get(code)
        if protocol_error is not None:
            return cast(Exception, protocol_error(code, description))
        return self.errors.get(code, amp.UnknownRemoteError)(description)


#: A fast call waiting for its answer: its Deferred, its command, its deadline
#: and its time limit.  C{None} once it timed out (its late answer is ignored).
_Pending = Optional[Tuple["Deferred[Any]", FastCommand[Any], float, float]]

# Not a fast call's tag: the box goes to the generic path.
_GENERIC: Any = object()

_ASK_KEY = pack_length(len(amp.ASK)) + amp.ASK


class _ClientProtocol(amp.AMP):
    """
    The client side of one connection: AMP that tells its
    L{DispatcherConnection} when the connection is lost, with the fast calls
    of L{fast_call} beside the generic ones.

    Boxes are read by L{dataReceived} with a L{BoxReader} instead of AMP's
    L{Int16StringReceiver}, incrementally.  A key over 255 bytes or a box
    over the connection's C{max_box_bytes} drops the connection (the calls
    waiting fail with L{DispatcherUnavailable}): a misbehaving dispatcher
    cannot make the client keep an endless box.  When nothing was sent for
    C{keepalive} seconds, a C{Stats} call goes out, so the dispatcher's idle
    timeout does not close a quiet connection.  The client never switches
    protocols or starts TLS within AMP.
    """

    #: Set once the connection is lost (before pending calls fail).
    lost = False

    def __init__(self, owner: DispatcherConnection) -> None:
        super().__init__()
        self._owner = owner
        self._clock = owner._clock
        self._reader = BoxReader(owner.max_box_bytes)
        self._warnings = Warnings(
            owner._clock, _log, {"role": owner.role, "endpoint": owner.endpoint}
        )
        self._fast: Dict[bytes, _Pending] = {}
        self._timer: Optional[IDelayedCall] = None
        self._timer_at = 0.0
        # While boxes read are acted on: what fast calls made meanwhile send,
        # written at once when they are all done.
        self._batch: Optional[List[bytes]] = None
        # When the last box went out (the keep-alive counts from it).
        self._last_sent = 0.0
        self._keepalive: Optional[IDelayedCall] = None

    def itself(self) -> _ClientProtocol:
        """
        This protocol, not the proxy L{ClientService} hands out for it.
        """
        return self

    def connectionMade(self) -> None:
        no_delay(self.transport)
        super().connectionMade()
        self._last_sent = self._clock.seconds()
        if self._owner.keepalive > 0:
            self._keepalive = self._clock.callLater(self._owner.keepalive, self._keep_alive)

    def _keep_alive(self) -> None:
        """
        Send a C{Stats} if nothing was sent for C{keepalive} seconds; come
        back when that is next due.
        """
        self._keepalive = None
        if self.lost:
            return
        keepalive = self._owner.keepalive
        now = self._clock.seconds()
        if now - self._last_sent >= keepalive:
            call_remote(self, Stats).addErrback(lambda _: None)
        self._keepalive = self._clock.callLater(
            max(0.0, self._last_sent + keepalive - now), self._keep_alive
        )

    def fast_call(self, command: FastCommand[T], body: bytes, limit: float) -> Deferred[T]:
        """
        Send C{command} now: its box is C{_ask} and the tag, then C{body}
        (C{command.prefix}, the encoded arguments in key order, and
        L{_framing.END}).

        @param limit: seconds until the call fails with L{CallTimedOut}.
        @return: fires with C{command.parse(answer)}, or fails as
            L{DispatcherConnection.call} would.
        """
        tag = self._nextTag()
        answered: Deferred[T] = Deferred(self._cancelled)
        now = self._clock.seconds()
        deadline = now + limit
        self._fast[tag] = (answered, command, deadline, limit)
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline, now)
        box = _ASK_KEY + pack_length(len(tag)) + tag + body
        self._last_sent = now
        if self._batch is not None:
            self._batch.append(box)
        else:
            assert self.transport is not None
            self.transport.write(box)
        return answered

    def sendBox(self, box: amp.AmpBox) -> None:
        """
        Send a box of the generic path, after the fast calls' boxes batched
        before it.
        """
        self._flush()
        self._last_sent = self._clock.seconds()
        super().sendBox(box)

    def _flush(self) -> None:
        batch = self._batch
        if batch:
            self._batch = []
            if self.transport is not None:
                self.transport.write(b"".join(batch))

    def dataReceived(self, data: bytes) -> None:
        # Read (and what follows kept) before any box is acted on: a callback
        # may feed more data in.
        boxes, error = self._reader.read(data)
        if self._batch is not None:  # fed in by a callback: the outer call writes
            self._act_on(boxes)
        else:
            self._batch = []
            try:
                self._act_on(boxes)
            finally:
                self._flush()
                self._batch = None
        if error is not None:
            self._dropped(error)

    def _dropped(self, error: FramingError) -> None:
        """
        The dispatcher sent bytes that are not boxes we accept: say why, and
        close (every call waiting fails with L{DispatcherUnavailable}).
        """
        self._warnings.warn("dispatcher connection dropped", reason=str(error))
        assert self.transport is not None
        self.transport.loseConnection()

    def _act_on(self, boxes: List[Box]) -> None:
        """
        Resolve the fast calls that C{boxes} answer, and pass the others to
        AMP, in order.
        """
        fast = self._fast
        for box in boxes:
            tag = box.get(amp.ANSWER)
            if tag is not None:
                pending = fast.pop(tag, _GENERIC)
                if pending is _GENERIC:
                    self._generic(box, tag)
                elif pending is not None:
                    answered = pending[0]
                    if not answered.called:
                        try:
                            result = pending[1].parse(box)
                        except Exception:
                            answered.errback()
                        else:
                            answered.callback(result)
                continue
            tag = box.get(amp.ERROR)
            pending = _GENERIC if tag is None else fast.pop(tag, _GENERIC)
            if pending is _GENERIC:
                self._generic(box, tag)
            elif pending is not None:
                error = pending[1].error(box)
                if not pending[0].called:
                    pending[0].errback(Failure(error))

    def _generic(self, box: Box, tag: Optional[bytes]) -> None:
        """
        Pass C{box} to AMP's own handling if it answers a generic call (or
        is a command); a dispatcher's answer to no call, or a box that is
        neither, is ignored with a warning instead of AMP's traceback.
        """
        if tag is not None and tag not in self._outstandingRequests:
            self._warnings.warn("dispatcher box ignored", reason="an answer to no call")
        elif tag is None and amp.COMMAND not in box:
            self._warnings.warn("dispatcher box ignored", reason="not an answer")
        else:
            self.ampBoxReceived(amp.AmpBox(box))

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = True
        self._warnings.stop()
        if not isinstance(reason.value, ConnectionClosed):
            # A TLS error (a certificate refused, say): the calls fail as for
            # any lost connection, with the cause in the message.
            reason = Failure(ConnectionLost(reason.getErrorMessage()))
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
        self._reader.clear()
        super().connectionLost(reason)
        self._fail_fast(cast(Failure, self._failAllReason))
        self._owner.connection_lost(reason)

    def _fail_fast(self, reason: Failure) -> None:
        """
        Fail the fast calls still waiting as the generic ones fail when the
        connection is lost.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending = self._fast
        self._fast = {}
        for call in pending.values():
            if call is not None and not call[0].called:
                call[0].errback(self._owner.lost_before_answer(call[1].name, reason))

    def _cancelled(self, answered: Deferred[Any]) -> None:
        """
        A fast call's Deferred was cancelled: it fails as a cancelled generic
        call does.
        """
        for call in self._fast.values():
            if call is not None and call[0] is answered:
                answered.errback(self._owner.cancelled_failure(call[1].name))
                return

    def _arm(self, deadline: float, now: float) -> None:
        """
        Set the timer for C{deadline}, the earliest of the fast calls'.
        """
        self._timer_at = deadline
        if self._timer is None:
            self._timer = self._clock.callLater(deadline - now, self._expire)
        else:
            self._timer.reset(deadline - now)

    def _expire(self) -> None:
        """
        The earliest deadline came: fail the fast calls whose deadline is
        past with L{CallTimedOut}, and set the timer for the next.
        """
        self._timer = None
        due_by = max(self._timer_at, self._clock.seconds())
        fast = self._fast
        due: List[bytes] = []
        earliest: Optional[float] = None
        for tag, call in fast.items():
            if call is None:
                continue
            deadline = call[2]
            if deadline <= due_by:
                due.append(tag)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        for tag in due:
            call = fast[tag]
            fast[tag] = None
            assert call is not None
            if not call[0].called:
                call[0].errback(self._owner.deadline_error(call[1].name, call[3], sent=True))
        if (
            earliest is not None
            and not self.lost
            and (self._timer is None or earliest < self._timer_at)
        ):
            self._arm(earliest, self._clock.seconds())


class _ClientFactory(Factory):
    """
    Builds the one connection's protocol for a L{DispatcherConnection}.
    """

    noisy = False

    def __init__(self, owner: DispatcherConnection) -> None:
        self._owner = owner

    def buildProtocol(self, addr: Optional[IAddress]) -> _ClientProtocol:
        protocol = _ClientProtocol(self._owner)
        protocol.factory = self
        return protocol


@define
class _Call:
    """
    What one call has got to: whether it was sent yet.
    """

    command: Type[amp.Command]
    sent: bool = False


class DispatcherConnection:
    """
    Keeps one connection to one dispatcher listener up and sends calls over
    it.

    @param reactor: the reactor (connects, and is the clock of backoff and
        call timeouts).
    @param endpoint: a Twisted client endpoint string, e.g.
        C{"tcp:127.0.0.1:8750"}.
    @param role: C{"frontend"} or C{"scheduler"}, for logs.
    @param call_timeout: seconds each call may take, waiting for a connection
        included.
    @param fail_after_failures: if not C{None}, a call fails with
        L{DispatcherUnavailable} (wrapping the connection error) once that many
        connection attempts failed in a row while it waited.
    @param on_connect: called with each new connection before any call waiting
        for it goes out (boxes it sends go first on the wire).
    @param retry_policy: seconds to wait before reconnect attempt N; default
        C{backoffPolicy()}.
    @param max_box_bytes: the longest box accepted from the dispatcher; a
        longer one drops the connection.
    @param keepalive: seconds without a call after which a C{Stats} goes
        out (0: never), below the dispatcher's idle timeout.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: str,
        *,
        role: str,
        call_timeout: float = 5.0,
        fail_after_failures: Optional[int] = None,
        on_connect: Optional[Callable[[amp.AMP], None]] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        max_box_bytes: int = CLIENT_MAX_BOX_BYTES,
        keepalive: float = CLIENT_KEEPALIVE,
    ) -> None:
        self._clock: IReactorTime = reactor
        self.endpoint = endpoint
        self.role = role
        self.max_box_bytes = max_box_bytes
        self.keepalive = keepalive
        self.call_timeout = call_timeout
        self.fail_after_failures = fail_after_failures
        self._on_connect = on_connect
        # The connection fast calls go out on, once prepared.
        self._live: Optional[_ClientProtocol] = None
        self._service = ClientService(
            clientFromString(reactor, endpoint),
            _ClientFactory(self),
            retryPolicy=backoffPolicy() if retry_policy is None else retry_policy,
            clock=reactor,
            prepareConnection=self._prepare,
        )

    def start(self) -> None:
        """
        Start connecting, and reconnecting with backoff whenever the
        connection is lost or an attempt fails.
        """
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """
        Stop reconnecting and close the connection.  Calls still waiting for
        a connection fail with L{DispatcherUnavailable}.

        @return: fires once the connection is closed.
        """
        self._live = None
        stopped: Deferred[None] = self._service.stopService()
        return stopped

    def _prepare(self, protocol: IProtocol) -> None:
        # ClientService hands over the connection only after this returns, so
        # whatever on_connect sends goes out before any waiting call.  It does
        # not wait for answers: AMP keeps one connection's boxes in order, and
        # a connection lost while ClientService waited here would upset its
        # state machine.
        _log.info(
            "dispatcher connection up",
            role=self.role,
            endpoint=self.endpoint,
            peer=_peer(protocol),
        )
        if self._on_connect is not None:
            self._on_connect(cast(amp.AMP, protocol))
        self._live = cast(_ClientProtocol, protocol).itself()

    def connection_lost(self, reason: Failure) -> None:
        """
        Log that the connection was lost (L{ClientService} reconnects).
        """
        if self._live is not None and self._live.lost:
            self._live = None
        _log.info(
            "dispatcher connection lost",
            role=self.role,
            endpoint=self.endpoint,
            reason=reason.getErrorMessage(),
        )

    def call(
        self,
        command: Type[amp.Command],
        arguments: Arguments,
        *,
        wait: Optional[float] = None,
        before_send: Optional[Callable[[Arguments], None]] = None,
    ) -> Deferred[Answer]:
        """
        Send C{command} with C{arguments} once connected, with a deadline.

        @param wait: seconds the dispatcher itself may take to answer (a
            C{NextWorker} timeout), added to the call timeout.
        @param before_send: called with the (checked) arguments right before
            they are sent; it may fill in more of them.
        @return: fires with the answer, or fails with the command's declared
            error, L{InvalidArgument} for an argument out of range (at once),
            L{DispatcherUnavailable} or L{CallTimedOut}.
        """
        try:
            sendable = check_arguments(command, arguments)
        except InvalidArgument:
            return fail()
        limit = self.call_timeout + (wait or 0.0)
        state = _Call(command)

        def connected(protocol: _ClientProtocol) -> Deferred[Answer]:
            if protocol.lost:
                # Lost, but ClientService has not been told yet (we run in a
                # callback of the loss): wait for the next connection.
                return self._next_turn().addCallback(lambda _: waited())
            return send(protocol)

        def waited() -> Deferred[Answer]:
            # Connection failures are delivered from inside ClientService's
            # state machine: pass them on from a clean stack, where the
            # caller may stop or start the client.
            connection: Deferred[Any] = self._service.whenConnected(
                failAfterFailures=self.fail_after_failures
            )
            connection.addErrback(self._next_turn)
            return connection.addCallback(connected)

        def send(protocol: amp.AMP) -> Deferred[Answer]:
            if before_send is not None:
                before_send(sendable)
            state.sent = True
            return call_remote(protocol, command, **sendable)

        def timed_out(result: object, timeout: float) -> NoReturn:
            raise self.deadline_error(command.commandName.decode("ascii"), timeout, sent=state.sent)

        answered = waited()
        answered.addTimeout(limit, self._clock, onTimeoutCancel=timed_out)
        return answered.addErrback(self._failed, state)

    def _next_turn(self, failure: Optional[Failure] = None) -> Deferred[None]:
        """
        A Deferred that fires (or fails with C{failure}) on the reactor's
        next turn; cancelling it cancels the wait.
        """
        turn: Deferred[None] = Deferred(lambda _: delayed.cancel())
        if failure is None:
            delayed = self._clock.callLater(0, turn.callback, None)
        else:
            delayed = self._clock.callLater(0, turn.errback, failure)
        return turn

    def _failed(self, failure: Failure, state: _Call) -> Failure:
        """
        Turn connection-level failures into L{DispatcherUnavailable}; pass the
        dispatcher's errors and the client's own on.
        """
        name = state.command.commandName.decode("ascii")
        value = failure.value
        error: Optional[DispatcherUnavailable] = None
        if isinstance(value, (ClientError, amp.RemoteAmpError)):
            return failure
        if isinstance(value, CancelledError):
            error = self._stopped_error(name)
        elif state.sent and isinstance(value, ConnectionClosed):
            error = self._lost_error(name, failure)
        elif not state.sent:
            error = DispatcherUnavailable(
                f"cannot connect to {self.endpoint}: {failure.getErrorMessage()}"
            )
        if error is None:
            return failure
        _log.debug("dispatcher call failed", role=self.role, command=name, error=str(error))
        raise error from value

    def fast_call(
        self, command: FastCommand[T], body: bytes, wait: Optional[float] = None
    ) -> Optional[Deferred[T]]:
        """
        Send C{command} at once on the live connection, without Twisted's
        generic call machinery, if there is one.

        @param body: the box after its tag: C{command.prefix}, the arguments
            (checked, encoded as the schema encodes them, in key order) and
            L{_framing.END}.
        @param wait: as for L{call}.
        @return: as L{call}'s, or C{None} (nothing sent) when no connection
            is up: then use L{call}.
        """
        protocol = self._live
        if protocol is None or protocol.lost:
            return None
        return protocol.fast_call(command, body, self.call_timeout + (wait or 0.0))

    def deadline_error(self, name: str, timeout: float, *, sent: bool) -> ClientError:
        """
        The error of a call whose deadline ran out (after C{timeout} seconds).
        """
        if sent:
            return CallTimedOut(f"no answer to {name} from {self.endpoint} within {timeout} s")
        return DispatcherUnavailable(f"no connection to {self.endpoint} within {timeout} s")

    def cancelled_failure(self, name: str) -> Failure:
        """
        The failure of a sent call that was cancelled.
        """
        return self._unavailable(name, self._stopped_error(name), CancelledError())

    def lost_before_answer(self, name: str, reason: Failure) -> Failure:
        """
        The failure of a sent call whose connection was lost with C{reason}
        before the answer came.
        """
        if not isinstance(reason.value, ConnectionClosed):
            return reason
        return self._unavailable(name, self._lost_error(name, reason), reason.value)

    def _stopped_error(self, name: str) -> DispatcherUnavailable:
        return DispatcherUnavailable(f"client of {self.endpoint} stopped before {name}")

    def _lost_error(self, name: str, reason: Failure) -> DispatcherUnavailable:
        return DispatcherUnavailable(
            f"connection to {self.endpoint} lost before {name} was answered:"
            f" {reason.getErrorMessage()}"
        )

    def _unavailable(
        self, name: str, error: DispatcherUnavailable, cause: BaseException
    ) -> Failure:
        """
        A failure of C{error} caused by C{cause}, logged as L{_failed} does.
        """
        _log.debug("dispatcher call failed", role=self.role, command=name, error=str(error))
        error.__cause__ = cause
        return Failure(error)


class DispatcherClient:
    """
    What both clients have: a kept-up connection to one listener, L{start},
    L{stop}, L{stats}, and use as an async context manager (started on entry,
    stopped on exit).
    """

    _role: str = ""

    def __init__(
        self,
        reactor: Any,
        endpoint: str,
        *,
        call_timeout: float = 5.0,
        fail_after_failures: Optional[int] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        max_box_bytes: int = CLIENT_MAX_BOX_BYTES,
        keepalive: float = CLIENT_KEEPALIVE,
    ) -> None:
        self._reactor = reactor
        self._connection = DispatcherConnection(
            reactor,
            endpoint,
            role=self._role,
            call_timeout=call_timeout,
            fail_after_failures=fail_after_failures,
            on_connect=self._connected,
            retry_policy=retry_policy,
            max_box_bytes=max_box_bytes,
            keepalive=keepalive,
        )

    @property
    def endpoint(self) -> str:
        """
        The client endpoint string this client connects to.
        """
        return self._connection.endpoint

    def start(self) -> None:
        """
        Start keeping a connection up (calls made before wait for it).
        """
        self._connection.start()

    def stop(self) -> Deferred[None]:
        """
        Stop reconnecting and close the connection.

        @return: fires once it is closed.
        """
        return self._connection.stop()

    async def __aenter__(self: _SelfClient) -> _SelfClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def stats(self) -> Deferred[DispatcherStats]:
        """
        The dispatcher's counters.
        """
        answered = self._connection.call(Stats, {})
        return answered.addCallback(lambda answer: DispatcherStats(**answer))

    def _connected(self, protocol: amp.AMP) -> None:
        """
        A new connection is up; nothing has been sent on it yet.
        """
