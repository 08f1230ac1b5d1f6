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
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NoReturn, Optional, Type, TypeVar, cast

import structlog
from amp_dispatch_commands import InvalidArgument, Stats
from attrs import define, frozen
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IAddress, IProtocol, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.python.failure import Failure

from ._addresses import describe

_log = structlog.get_logger("amp_dispatch.client")

#: The arguments of one call, by Python name; C{None} leaves an optional one out.
Arguments = Dict[str, Any]

#: A command's parsed answer, by Python name.
Answer = Dict[str, Any]

#: C{AMP.callRemote}, typed: (protocol, command, **arguments) -> answer.
call_remote = cast(Callable[..., "Deferred[Answer]"], amp.AMP.callRemote)

_SelfClient = TypeVar("_SelfClient", bound="DispatcherClient")


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


class _ClientProtocol(amp.AMP):
    """
    The client side of one connection: plain AMP that tells its
    L{DispatcherConnection} when the connection is lost.
    """

    #: Set once the connection is lost (before pending calls fail).
    lost = False

    def __init__(self, owner: DispatcherConnection) -> None:
        super().__init__()
        self._owner = owner

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = True
        super().connectionLost(reason)
        self._owner.connection_lost(reason)


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
    ) -> None:
        self._clock: IReactorTime = reactor
        self.endpoint = endpoint
        self.role = role
        self.call_timeout = call_timeout
        self.fail_after_failures = fail_after_failures
        self._on_connect = on_connect
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

    def connection_lost(self, reason: Failure) -> None:
        """
        Log that the connection was lost (L{ClientService} reconnects).
        """
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
            name = command.commandName.decode("ascii")
            error: ClientError
            if state.sent:
                error = CallTimedOut(f"no answer to {name} from {self.endpoint} within {timeout} s")
            else:
                error = DispatcherUnavailable(
                    f"no connection to {self.endpoint} within {timeout} s"
                )
            raise error

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
            error = DispatcherUnavailable(f"client of {self.endpoint} stopped before {name}")
        elif state.sent and isinstance(value, ConnectionClosed):
            error = DispatcherUnavailable(
                f"connection to {self.endpoint} lost before {name} was answered:"
                f" {failure.getErrorMessage()}"
            )
        elif not state.sent:
            error = DispatcherUnavailable(
                f"cannot connect to {self.endpoint}: {failure.getErrorMessage()}"
            )
        if error is None:
            return failure
        _log.debug("dispatcher call failed", role=self.role, command=name, error=str(error))
        raise error from value


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
