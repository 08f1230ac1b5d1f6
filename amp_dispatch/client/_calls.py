"""
The protocol of one client connection: Twisted's AMP, with pipelined fast
calls beside the generic ones, one deadline timer for all of them, a bounded
box reader and a keep-alive.

B{Fast calls.}  Twisted's generic AMP machinery (C{callRemote}: a Command and
argument objects per call; parsing through L{Int16StringReceiver};
L{BoxDispatcher}; a L{DelayedCall} per call from C{addTimeout}) costs tens of
microseconds of client CPU per call.  A command described by a L{FastCommand}
can instead be sent with L{ClientProtocol.fast_call}: its box (the same bytes
C{callRemote} would write: keys sorted, the tag from the protocol's own
counter) is pre-encoded but for the tag, and its Deferred waits in the
protocol's own table as a L{PendingCall}.  The protocol reads boxes with a
L{BoxReader}: an answer or error to a fast call is resolved there (the answer
parsed by the command's C{parse}, an error mapped to the command's error
classes as C{callRemote} does), every other box goes to the stock
C{ampBoxReceived}, so generic calls share the connection.  Fast calls keep the
generic calls' deadlines and errors, but all of one connection's deadlines
share one timer, armed for the earliest.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Generic, List, Optional, Type, TypeVar, cast

from amp_dispatch_commands import Stats
from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.protocols import amp
from twisted.python.failure import Failure

from .._log import get_logger
from ..protocol._addresses import no_delay
from ..protocol._framing import Box, BoxReader, FramingError, encode_pair, pack_length
from ..protocol._peerlog import Warnings
from ._arguments import Answer
from ._errors import CallErrors, wrong_listener

_log = get_logger("amp_dispatch.client")

#: C{AMP.callRemote}, typed: (protocol, command, **arguments) -> answer.
call_remote = cast(Callable[..., "Deferred[Answer]"], amp.AMP.callRemote)

T = TypeVar("T")


class FastCommand(Generic[T]):
    """
    How to make one command's calls without Twisted's generic call machinery
    (see L{ClientProtocol.fast_call}).

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
        declares, L{WrongListener} (an L{amp.UnhandledCommand}) for AMP's
        C{UNHANDLED}, else
        L{amp.UnknownRemoteError}.
        """
        code = box[amp.ERROR_CODE]
        description = box[amp.ERROR_DESCRIPTION].decode("utf-8", "replace")
        if code == amp.UNHANDLED_ERROR_CODE:
            return wrong_listener(self.name, description)
        protocol_error = amp.PROTOCOL_ERRORS.get(code)
        if protocol_error is not None:
            return cast(Exception, protocol_error(code, description))
        return self.errors.get(code, amp.UnknownRemoteError)(description)


@define(eq=False)
class PendingCall:
    """
    A fast call waiting for its answer.

    @ivar answered: fires with the call's result.
    @ivar command: what was called.
    @ivar deadline: when it fails with L{CallTimedOut}, on the clock.
    @ivar limit: the seconds it was given, for the message.
    """

    answered: Deferred[Any]
    command: FastCommand[Any]
    deadline: float
    limit: float


# Not a fast call's tag: the box goes to the generic path.
_GENERIC: Any = object()

_ASK_KEY = pack_length(len(amp.ASK)) + amp.ASK


class ClientProtocol(amp.AMP):
    """
    The client side of one connection: AMP with the fast calls of
    L{fast_call} beside the generic ones, which tells C{lost} when the
    connection is lost.

    Boxes are read by L{dataReceived} with a L{BoxReader} instead of AMP's
    L{Int16StringReceiver}, incrementally.  A key over 255 bytes or a box
    over C{max_box_bytes} drops the connection (the calls waiting fail with
    L{DispatcherUnavailable}): a misbehaving dispatcher cannot make the
    client keep an endless box.  When nothing was sent for C{keepalive}
    seconds (0: never), a C{Stats} call goes out, so the dispatcher's idle
    timeout does not close a quiet connection.  The client never switches
    protocols or starts TLS within AMP.

    @param clock: the clock of deadlines and the keep-alive.
    @param errors: the errors of this listener's calls.
    @param lost: called with the reason once the connection is lost, after
        every call waiting failed.
    """

    #: Set once the connection is lost (before pending calls fail).
    lost = False

    def __init__(
        self,
        clock: IReactorTime,
        errors: CallErrors,
        *,
        max_box_bytes: int,
        keepalive: float,
        lost: Callable[[Failure], None],
    ) -> None:
        super().__init__()
        self._clock = clock
        self._errors = errors
        self._keepalive_after = keepalive
        self._on_lost = lost
        self._reader = BoxReader(max_box_bytes)
        self._warnings = Warnings(clock, _log, {"role": errors.role, "endpoint": errors.endpoint})
        # None once a call timed out: its late answer is ignored.
        self._fast: Dict[bytes, Optional[PendingCall]] = {}
        self._timer: Optional[IDelayedCall] = None
        self._timer_at = 0.0
        # While boxes read are acted on: what fast calls made meanwhile send,
        # written at once when they are all done.
        self._batch: Optional[List[bytes]] = None
        # When the last box went out (the keep-alive counts from it).
        self._last_sent = 0.0
        self._keepalive: Optional[IDelayedCall] = None

    def itself(self) -> ClientProtocol:
        """
        This protocol, not the proxy L{ClientService} hands out for it.
        """
        return self

    def connectionMade(self) -> None:
        no_delay(self.transport)
        super().connectionMade()
        self._last_sent = self._clock.seconds()
        if self._keepalive_after > 0:
            self._keepalive = self._clock.callLater(self._keepalive_after, self._keep_alive)

    def _keep_alive(self) -> None:
        """
        Send a C{Stats} if nothing was sent for C{keepalive} seconds; come
        back when that is next due.
        """
        self._keepalive = None
        if self.lost:
            return
        keepalive = self._keepalive_after
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
        @return: fires with C{command.parse(answer)}, or fails as a generic
            call would.
        """
        tag = self._nextTag()
        answered: Deferred[T] = Deferred(self._cancelled)
        now = self._clock.seconds()
        deadline = now + limit
        self._fast[tag] = PendingCall(answered, command, deadline, limit)
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
                    answered = pending.answered
                    if not answered.called:
                        try:
                            result = pending.command.parse(box)
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
                error = pending.command.error(box)
                if not pending.answered.called:
                    pending.answered.errback(Failure(error))

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
        self._on_lost(reason)

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
            if call is not None and not call.answered.called:
                call.answered.errback(self._errors.lost_before_answer(call.command.name, reason))

    def _cancelled(self, answered: Deferred[Any]) -> None:
        """
        A fast call's Deferred was cancelled: it fails as a cancelled generic
        call does.
        """
        for call in self._fast.values():
            if call is not None and call.answered is answered:
                answered.errback(self._errors.cancelled(call.command.name))
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
            deadline = call.deadline
            if deadline <= due_by:
                due.append(tag)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        for tag in due:
            call = fast[tag]
            fast[tag] = None
            assert call is not None
            if not call.answered.called:
                error = self._errors.deadline(call.command.name, call.limit, sent=True)
                call.answered.errback(error)
        if (
            earliest is not None
            and not self.lost
            and (self._timer is None or earliest < self._timer_at)
        ):
            self._arm(earliest, self._clock.seconds())


__all__ = ["ClientProtocol", "FastCommand", "PendingCall", "call_remote"]
