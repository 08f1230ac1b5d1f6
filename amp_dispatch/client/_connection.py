"""
The kept-up connection to one dispatcher listener, and calls over it with a
deadline and clear client-side errors.

A L{DispatcherConnection} runs a L{ClientService} (exponential backoff, the
client's reactor as its clock) that keeps one connection up, each a
L{ClientProtocol}.  L{DispatcherConnection.call} checks a command's arguments
before anything else (a bad value fails the call with the schema's
L{InvalidArgument}, naming the field, without waiting for a connection),
waits for the connection, sends, and consumes the answer: AMP drops a
connection whose call result ends unhandled.  Every call has one deadline
from the moment it is made: if it runs out before a connection came the call
fails with L{DispatcherUnavailable}, if it runs out after the call was sent
it fails with L{CallTimedOut} (a late answer is then ignored).

Until the first connection is up, a failed connection attempt (every
endpoint of a list tried once) fails the calls waiting for it, and a call
made after it fails at once, with L{DispatcherUnavailable} carrying the
cause: a dispatcher that is down, or a wrong endpoint, shows at first
contact.  Once connected, calls wait through an outage for the reconnection
(or up to C{fail_after_failures} failed attempts), and a call whose deadline
runs out names the latest connection error.
L{DispatcherConnection.fast_call} sends a L{FastCommand} at once on the live
connection instead, when there is one.
"""

from __future__ import annotations

from typing import Any, Callable, NoReturn, Optional, Sequence, Tuple, Type, TypeVar, Union, cast

from amp_dispatch_commands import InvalidArgument
from attrs import define
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from .._log import get_logger
from ..protocol._addresses import describe
from ._arguments import Answer, Arguments, check_arguments
from ._calls import ClientProtocol, FastCommand, call_remote
from ._defaults import CLIENT_CALL_TIMEOUT, CLIENT_KEEPALIVE, CLIENT_MAX_BOX_BYTES
from ._errors import CallErrors, ClientError, wrong_listener
from ._failover import FailoverEndpoint

_log = get_logger("amp_dispatch.client")

T = TypeVar("T")

#: One endpoint: a Twisted client endpoint string, or an object providing
#: L{IStreamClientEndpoint}.
OneEndpoint = Union[str, IStreamClientEndpoint]

#: Where a client connects: one endpoint, or several (a list or tuple) of
#: the same listener on replicas of a dispatcher, tried in turn (see
#: L{FailoverEndpoint}).
Endpoint = Union[OneEndpoint, Sequence[OneEndpoint]]


def connector(reactor: Any, endpoint: Endpoint) -> Tuple[IStreamClientEndpoint, str]:
    """
    The endpoint to connect with, and its printable description: the string
    itself, an endpoint object's C{str()}, or for several, theirs joined by
    commas.

    @raise TypeError: C{endpoint} is none of these.
    @raise ValueError: a string is not one Twisted can parse (or
        C{KeyError}, for some), or the list is empty.
    """
    if isinstance(endpoint, (list, tuple)):
        if not endpoint:
            raise ValueError("give at least one endpoint")
        built = [_one(reactor, each) for each in endpoint]
        if len(built) == 1:
            return built[0]
        failover = FailoverEndpoint([each for each, _ in built], [name for _, name in built])
        return failover, str(failover)
    return _one(reactor, endpoint)


def _one(reactor: Any, endpoint: Any) -> Tuple[IStreamClientEndpoint, str]:
    if isinstance(endpoint, str):
        return clientFromString(reactor, endpoint), endpoint
    if not IStreamClientEndpoint.providedBy(endpoint):
        raise TypeError(
            "endpoint must be a client endpoint string or provide"
            f" IStreamClientEndpoint, or a list of them, not {endpoint!r}"
        )
    return endpoint, str(endpoint)


def _peer(protocol: object) -> str:
    """
    The peer address of C{protocol}'s transport, for logs.
    """
    transport = getattr(protocol, "transport", None)
    return describe(transport.getPeer()) if transport is not None else "?"


class _ClientFactory(Factory):
    """
    Builds the one connection's protocol for a L{DispatcherConnection}.
    """

    noisy = False

    def __init__(self, owner: DispatcherConnection) -> None:
        self._owner = owner

    def buildProtocol(self, addr: Optional[IAddress]) -> ClientProtocol:
        owner = self._owner
        protocol = ClientProtocol(
            owner.clock,
            owner.errors,
            max_box_bytes=owner.max_box_bytes,
            keepalive=owner.keepalive,
            # Looked up when the loss comes, so it may be wrapped meanwhile.
            lost=lambda reason: owner.connection_lost(reason),
        )
        protocol.factory = self
        return protocol


@implementer(IStreamClientEndpoint)
class _Attempts:
    """
    The endpoint a L{DispatcherConnection}'s L{ClientService} connects
    through: it tells the connection of each attempt and of each failure.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, owner: DispatcherConnection) -> None:
        self._endpoint = endpoint
        self._owner = owner

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        self._owner.attempt_started()
        connecting: Deferred[IProtocol] = self._endpoint.connect(protocolFactory)
        return connecting.addErrback(self._owner.attempt_failed)


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
        C{"tcp:127.0.0.1:8750"}, or an object providing
        L{IStreamClientEndpoint}.
    @param role: C{"frontend"} or C{"scheduler"}, for logs.
    @param call_timeout: seconds each call may take, waiting for a connection
        included.
    @param fail_after_failures: if not C{None}, once connected a first time,
        a call fails with L{DispatcherUnavailable} (carrying the connection
        error) once that many connection attempts failed in a row while it
        waited.  Before, the first failed attempt fails it.
    @param on_connect: called with each new connection before any call waiting
        for it goes out (boxes it sends go first on the wire).
    @param retry_policy: seconds to wait before reconnect attempt N; default
        C{backoffPolicy()}.
    @param max_box_bytes: the longest box accepted from the dispatcher; a
        longer one drops the connection.
    @param keepalive: seconds without a call after which a C{Stats} goes
        out (0: never), below the dispatcher's idle timeout.

    @ivar endpoint: the endpoint string, or the endpoint object's C{str()}:
        messages and logs name it.
    @ivar clock: the reactor, as the clock of deadlines and the keep-alive.
    @ivar errors: the errors of the calls to this listener.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: Endpoint,
        *,
        role: str,
        call_timeout: float = CLIENT_CALL_TIMEOUT,
        fail_after_failures: Optional[int] = None,
        on_connect: Optional[Callable[[amp.AMP], None]] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        max_box_bytes: int = CLIENT_MAX_BOX_BYTES,
        keepalive: float = CLIENT_KEEPALIVE,
    ) -> None:
        self.clock: IReactorTime = reactor
        connect_with, self.endpoint = connector(reactor, endpoint)
        self.role = role
        self.errors = CallErrors(role, self.endpoint)
        self.max_box_bytes = max_box_bytes
        self.keepalive = keepalive
        self.call_timeout = call_timeout
        self.fail_after_failures = fail_after_failures
        self._on_connect = on_connect
        # The connection fast calls go out on, once prepared.
        self._live: Optional[ClientProtocol] = None
        # None until started, then whether running.
        self._running: Optional[bool] = None
        self._connected_once = False
        # The latest connection error (a failed attempt or a loss), and
        # whether the latest attempt failed (none is under way).
        self._last_error: Optional[Failure] = None
        self._attempt_failed = False
        self._service = ClientService(
            _Attempts(connect_with, self),
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
        self._running = True
        self._service.startService()

    def stop(self) -> Deferred[None]:
        """
        Stop reconnecting and close the connection.  Calls still waiting for
        a connection fail with L{DispatcherUnavailable}.

        @return: fires once the connection is closed.
        """
        self._live = None
        self._running = False
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
        self._connected_once = True
        self._last_error = None
        if self._on_connect is not None:
            self._on_connect(cast(amp.AMP, protocol))
        self._live = cast(ClientProtocol, protocol).itself()

    def attempt_started(self) -> None:
        """
        A connection attempt starts.
        """
        self._attempt_failed = False

    def attempt_failed(self, reason: Failure) -> Failure:
        """
        A connection attempt failed with C{reason} (passed on), unless it
        was cancelled (the client stops).
        """
        if not isinstance(reason.value, CancelledError):
            self._last_error = reason
            self._attempt_failed = True
        return reason

    def connection_lost(self, reason: Failure) -> None:
        """
        Log that the connection was lost (L{ClientService} reconnects).
        """
        if self._live is not None and self._live.lost:
            self._live = None
        self._last_error = reason
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
        if not self._running or (self._attempt_failed and not self._connected_once):
            return fail(self._refused(command))
        limit = self.call_timeout + (wait or 0.0)
        state = _Call(command)

        def connected(protocol: ClientProtocol) -> Deferred[Answer]:
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
                failAfterFailures=self.fail_after_failures if self._connected_once else 1
            )
            connection.addErrback(self._next_turn)
            return connection.addCallback(connected)

        def send(protocol: amp.AMP) -> Deferred[Answer]:
            if before_send is not None:
                before_send(sendable)
            state.sent = True
            return call_remote(protocol, command, **sendable)

        def timed_out(result: object, timeout: float) -> NoReturn:
            raise self.errors.deadline(
                command.commandName.decode("ascii"),
                timeout,
                sent=state.sent,
                last_error=self._last_error,
            )

        answered = waited()
        answered.addTimeout(limit, self.clock, onTimeoutCancel=timed_out)
        return answered.addErrback(self._failed, state)

    def _refused(self, command: Type[amp.Command]) -> Failure:
        """
        The failure of a call made when it cannot wait for a connection: the
        client is not running, or it never connected and its latest attempt
        failed.
        """
        name = command.commandName.decode("ascii")
        if self._running is None:
            return self.errors.failure(name, self.errors.not_started(), None)
        if not self._running:
            return self.errors.failure(name, self.errors.stopped(name), None)
        assert self._last_error is not None
        error = self.errors.cannot_connect(self._last_error)
        return self.errors.failure(name, error, self._last_error.value)

    def _next_turn(self, failure: Optional[Failure] = None) -> Deferred[None]:
        """
        A Deferred that fires (or fails with C{failure}) on the reactor's
        next turn; cancelling it cancels the wait.
        """
        turn: Deferred[None] = Deferred(lambda _: delayed.cancel())
        if failure is None:
            delayed = self.clock.callLater(0, turn.callback, None)
        else:
            delayed = self.clock.callLater(0, turn.errback, failure)
        return turn

    def _failed(self, failure: Failure, state: _Call) -> Failure:
        """
        Turn connection-level failures into L{DispatcherUnavailable}; pass the
        dispatcher's errors and the client's own on.
        """
        name = state.command.commandName.decode("ascii")
        value = failure.value
        if isinstance(value, amp.UnhandledCommand) and not isinstance(value, ClientError):
            return Failure(wrong_listener(name, str(value.args[-1] if value.args else value)))
        if isinstance(value, (ClientError, amp.RemoteAmpError)):
            return failure
        if isinstance(value, CancelledError):
            error = self.errors.stopped(name)
        elif state.sent and isinstance(value, ConnectionClosed):
            error = self.errors.lost(name, failure)
        elif not state.sent:
            error = self.errors.cannot_connect(failure)
        else:
            return failure
        return self.errors.failure(name, error, value)

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


__all__ = ["DispatcherConnection", "Endpoint", "connector"]
