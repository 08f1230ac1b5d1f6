"""
The connection and call machinery both clients share: deadlines, connection
failures and losses, argument checks, start and stop.  In memory, on a
L{MemoryReactorClock}, against a scripted server that answers when told.
"""

from __future__ import annotations

from typing import List, Optional

import pytest
from amp_dispatch_commands import (
    FRONTEND_COMMANDS,
    SCHEDULER_COMMANDS,
    InvalidArgument,
    NextWorker,
    Stats,
)
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.protocols import amp
from twisted.test.iosim import IOPump
from zope.interface import implementer

from amp_dispatch.client import (
    CallTimedOut,
    DispatcherStats,
    DispatcherUnavailable,
    FrontendClient,
    SchedulerClient,
    WrongListener,
)
from tests._client_helpers import (
    FRONTEND,
    FRONTEND_PORT,
    SCHEDULER,
    SCHEDULER_PORT,
    Network,
    Script,
    fixed_retry,
)
from tests._deferreds import failure_of, fired, result_of

STATS = {"workers": 1, "free_slots": 2, "waiting": 0, "dispatched": 3, "protocol": 1}


class Frontend:
    """
    A L{FrontendClient} and a scripted front-end listener in a L{Network}.
    """

    def __init__(
        self, *, call_timeout: float = 5.0, fail_after_failures: Optional[int] = None
    ) -> None:
        self.network = Network()
        self.reactor = self.network.reactor
        self.script = Script(FRONTEND_COMMANDS)
        self.network.listen(FRONTEND_PORT, self.script.factory())
        self.client = FrontendClient(
            self.reactor,
            FRONTEND,
            call_timeout=call_timeout,
            fail_after_failures=fail_after_failures,
            retry_policy=fixed_retry,
        )

    def connected(self) -> Frontend:
        self.client.start()
        self.pump = self.network.complete()
        return self


def test_call_fails_unavailable_without_connection_in_time() -> None:
    """
    A call that gets no connection within the call timeout fails with
    L{DispatcherUnavailable} saying so.
    """
    frontend = Frontend(call_timeout=5.0)
    frontend.client.start()
    d = frontend.client.stats()
    frontend.reactor.advance(4.9)
    assert not fired(d)
    frontend.reactor.advance(0.1)
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error) == f"no connection to {FRONTEND} within 5.0 s"


def test_waiting_next_worker_gets_its_timeout_added() -> None:
    """
    A C{next_worker} call that lets the dispatcher wait C{timeout} seconds
    has C{call_timeout + timeout} seconds in all.
    """
    frontend = Frontend(call_timeout=5.0)
    frontend.client.start()
    d = frontend.client.next_worker(timeout=10.0)
    frontend.reactor.advance(14.9)
    assert not fired(d)
    frontend.reactor.advance(0.1)
    assert "within 15.0 s" in str(failure_of(d, DispatcherUnavailable).value)


def test_call_sent_when_connection_comes_later() -> None:
    """
    A call made before the connection is up is sent once it comes, and
    answered.
    """
    frontend = Frontend()
    frontend.client.start()
    d = frontend.client.stats()
    frontend.reactor.advance(1.0)
    assert not fired(d)
    frontend.script.auto[Stats.commandName] = STATS
    frontend.network.complete()
    frontend.network.flush()
    assert result_of(d) == DispatcherStats(**STATS)


def test_unanswered_call_times_out() -> None:
    """
    A call sent but not answered within the call timeout fails with
    L{CallTimedOut}.
    """
    frontend = Frontend(call_timeout=5.0).connected()
    d = frontend.client.stats()
    frontend.network.flush()
    assert len(frontend.script.pending) == 1
    frontend.reactor.advance(5.0)
    assert str(failure_of(d, CallTimedOut).value) == (
        f"no answer to Stats from {FRONTEND} within 5.0 s"
    )


def test_late_answer_is_ignored_and_connection_kept() -> None:
    """
    An answer that comes after its call timed out is dropped quietly; the
    connection stays up and serves the next call.
    """
    frontend = Frontend(call_timeout=5.0).connected()
    d = frontend.client.stats()
    frontend.network.flush()
    frontend.reactor.advance(5.0)
    failure_of(d, CallTimedOut)
    frontend.script.pending[0].callback(STATS)
    frontend.network.flush()
    assert not frontend.pump.clientIO.disconnecting
    frontend.script.auto[Stats.commandName] = STATS
    again = frontend.client.stats()
    frontend.network.flush()
    assert result_of(again) == DispatcherStats(**STATS)


def test_connection_lost_mid_call_fails_unavailable() -> None:
    """
    A call whose connection is lost before its answer fails with
    L{DispatcherUnavailable}.
    """
    frontend = Frontend().connected()
    d = frontend.client.stats()
    frontend.network.flush()
    frontend.network.drop(frontend.pump)
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error).startswith(f"connection to {FRONTEND} lost before Stats was answered")


def test_refused_first_connection_fails_call_at_once() -> None:
    """
    Before the client ever connected, a refused attempt fails a waiting call
    at once with L{DispatcherUnavailable}, its message and its
    C{connection_error} giving the cause.
    """
    frontend = Frontend()
    frontend.client.start()
    d = frontend.client.stats()
    frontend.network.refuse()
    frontend.reactor.advance(0)
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error) == (
        f"cannot connect to {FRONTEND}: Connection was refused by other side: Connection refused."
    )
    assert isinstance(error, DispatcherUnavailable)
    assert isinstance(error.connection_error, ConnectionRefusedError)


def test_call_after_failed_first_attempt_fails_at_once() -> None:
    """
    Before the client ever connected, a call made after an attempt failed
    (while the client waits to retry) fails at once, with the cause.
    """
    frontend = Frontend()
    frontend.client.start()
    frontend.network.refuse()
    d = frontend.client.stats()
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error).startswith(f"cannot connect to {FRONTEND}: Connection was refused")


def test_call_waits_for_retry_under_way() -> None:
    """
    A call made while the retry after a failed first attempt is under way
    waits for it, and is answered when it connects.
    """
    frontend = Frontend()
    frontend.client.start()
    frontend.network.refuse()
    frontend.reactor.advance(1.0)
    d = frontend.client.stats()
    frontend.script.auto[Stats.commandName] = STATS
    frontend.network.complete()
    frontend.network.flush()
    assert result_of(d) == DispatcherStats(**STATS)


def test_call_before_start_fails_at_once() -> None:
    """
    A call made before L{start} fails at once with L{DispatcherUnavailable}
    saying to start the client.
    """
    frontend = Frontend()
    d = frontend.client.stats()
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error) == f"client of {FRONTEND} not started: call start() first"
    assert frontend.network.attempts() == 0


def test_client_can_be_stopped_from_connection_failure() -> None:
    """
    A caller may stop the client right in the errback of a call that a
    refused connection failed.
    """
    frontend = Frontend()
    frontend.client.start()
    stopped: List[Deferred[None]] = []
    d = frontend.client.stats()
    d.addErrback(lambda _: stopped.append(frontend.client.stop()))
    frontend.network.refuse()
    frontend.reactor.advance(0)
    assert result_of(stopped[0]) is None


def lost_connection(frontend: Frontend) -> Frontend:
    """
    C{frontend} connected once, then its connection dropped and the
    reconnection attempt refused.
    """
    frontend.connected()
    frontend.network.drop(frontend.pump)
    frontend.reactor.advance(1.0)
    frontend.network.refuse()
    frontend.reactor.advance(0)
    return frontend


def test_refused_reconnection_waited_through_once_connected() -> None:
    """
    Once the client has connected, a refused reconnection does not fail a
    waiting call: the client retries and sends it.
    """
    frontend = lost_connection(Frontend())
    d = frontend.client.stats()
    frontend.reactor.advance(1.0)
    frontend.network.refuse()
    frontend.reactor.advance(1.0)
    assert not fired(d)
    frontend.script.auto[Stats.commandName] = STATS
    frontend.network.complete()
    frontend.network.flush()
    assert result_of(d) == DispatcherStats(**STATS)


def test_deadline_names_last_connection_error() -> None:
    """
    A call that waited through an outage until its deadline fails with
    L{DispatcherUnavailable} naming the latest connection error.
    """
    frontend = lost_connection(Frontend(call_timeout=5.0))
    d = frontend.client.stats()
    frontend.reactor.advance(5.0)
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error) == (
        f"no connection to {FRONTEND} within 5.0 s (last error: Connection was refused"
        " by other side: Connection refused.)"
    )
    assert isinstance(error, DispatcherUnavailable)
    assert isinstance(error.connection_error, ConnectionRefusedError)


def test_fail_after_failures_fails_call_on_refused_reconnection() -> None:
    """
    Once connected, with C{fail_after_failures=1} a refused reconnection
    fails a waiting call at once, with the connection error in the message.
    """
    frontend = lost_connection(Frontend(fail_after_failures=1))
    d = frontend.client.stats()
    frontend.reactor.advance(1.0)
    frontend.network.refuse()
    frontend.reactor.advance(0)
    error = failure_of(d, DispatcherUnavailable).value
    assert str(error).startswith(f"cannot connect to {FRONTEND}: ")
    assert "Connection refused" in str(error)


def test_call_made_as_connection_is_lost_waits_for_next_one() -> None:
    """
    A call made while the connection is being lost (in the errback of a call
    the loss failed) is sent on the next connection.
    """
    frontend = Frontend().connected()
    retried: List[Deferred[DispatcherStats]] = []
    d = frontend.client.stats()
    d.addErrback(lambda _: retried.append(frontend.client.stats()))
    frontend.network.flush()
    frontend.network.drop(frontend.pump)
    frontend.reactor.advance(1.0)
    frontend.script.auto[Stats.commandName] = STATS
    frontend.network.complete()
    frontend.network.flush()
    assert result_of(retried[0]) == DispatcherStats(**STATS)


def test_stop_fails_calls_waiting_for_connection() -> None:
    """
    Stopping the client fails the calls still waiting for a connection with
    L{DispatcherUnavailable}.
    """
    frontend = Frontend()
    frontend.client.start()
    d = frontend.client.stats()
    frontend.client.stop()
    frontend.reactor.advance(0)
    assert "stopped" in str(failure_of(d, DispatcherUnavailable).value)


def test_call_after_stop_fails_unavailable() -> None:
    """
    A call made after the client stopped fails at once with
    L{DispatcherUnavailable}.
    """
    frontend = Frontend().connected()
    stopped = frontend.client.stop()
    frontend.network.flush()
    result_of(stopped)
    d = frontend.client.stats()
    assert str(failure_of(d, DispatcherUnavailable).value) == (
        f"client of {FRONTEND} stopped before Stats"
    )


def test_stop_closes_connection() -> None:
    """
    L{stop} closes the connection and fires once it is closed.
    """
    frontend = Frontend().connected()
    stopped = frontend.client.stop()
    assert not fired(stopped)
    frontend.network.flush()
    assert frontend.pump.serverIO.disconnected
    assert result_of(stopped) is None


def test_stopped_client_does_not_reconnect() -> None:
    """
    After L{stop}, no connection attempt is made however long one waits.
    """
    frontend = Frontend().connected()
    frontend.client.stop()
    frontend.network.flush()
    frontend.reactor.advance(600)
    assert frontend.network.attempts() == 0


def test_client_reconnects_after_connection_lost() -> None:
    """
    After the connection is lost the client connects again after the retry
    delay, and calls go over the new connection.
    """
    frontend = Frontend().connected()
    frontend.network.drop(frontend.pump)
    assert frontend.network.attempts() == 0
    frontend.reactor.advance(1.0)
    assert frontend.network.attempts() == 1
    frontend.network.complete()
    frontend.script.auto[Stats.commandName] = STATS
    d = frontend.client.stats()
    frontend.network.flush()
    assert result_of(d) == DispatcherStats(**STATS)


@pytest.mark.parametrize(
    ("pool", "timeout", "message"),
    [
        ("", None, "pool: must not be empty"),
        ("a\x00b", None, "pool: must not contain control characters"),
        ("x" * 256, None, "pool: must be at most 255 UTF-8 bytes"),
        (None, -1.0, "timeout: must not be negative"),
        (None, float("nan"), "timeout: must be a finite number"),
        (None, "soon", "timeout: must be a number, not 'soon'"),
    ],
)
def test_out_of_range_argument_fails_deferred(
    pool: Optional[str], timeout: object, message: str
) -> None:
    """
    An argument out of range fails the call's Deferred at once with
    L{InvalidArgument} naming the field, without raising and without waiting
    for a connection.
    """
    frontend = Frontend()
    d = frontend.client.next_worker(pool=pool, timeout=timeout)  # type: ignore[arg-type]
    assert str(failure_of(d, InvalidArgument).value) == message
    assert frontend.network.attempts() == 0


def test_out_of_range_argument_is_not_sent() -> None:
    """
    A call refused by the argument check sends nothing on a live connection.
    """
    frontend = Frontend().connected()
    failure_of(frontend.client.next_worker(pool=""), InvalidArgument)
    frontend.network.flush()
    assert frontend.script.received == []


def test_missing_required_argument_fails_deferred() -> None:
    """
    A required argument given as C{None} fails with L{InvalidArgument}
    naming it.
    """
    scheduler = SchedulerClient(Network().reactor, SCHEDULER)
    d = scheduler.gone(None)  # type: ignore[arg-type]
    assert str(failure_of(d, InvalidArgument).value) == "worker_id: missing"


def test_dispatcher_error_reaches_caller() -> None:
    """
    An error the dispatcher answers with reaches the caller as the schema's
    exception, with the dispatcher's message.
    """
    frontend = Frontend().connected()
    d = frontend.client.next_worker(pool="gpu")
    frontend.network.flush()
    frontend.script.pending[0].errback(InvalidArgument("pool: unknown to this test"))
    frontend.network.flush()
    assert str(failure_of(d, InvalidArgument).value) == "pool: unknown to this test"
    assert not frontend.pump.clientIO.disconnecting


def test_unhandled_command_keeps_connection() -> None:
    """
    A command the listener does not serve fails the call (AMP's unhandled
    command error) and the connection stays up.
    """
    network = Network()
    network.listen(SCHEDULER_PORT, Script(SCHEDULER_COMMANDS[:1]).factory())
    scheduler = SchedulerClient(network.reactor, SCHEDULER)
    scheduler.start()
    pump = network.complete()
    d = scheduler.stats()
    network.flush()
    error = failure_of(d, amp.UnhandledCommand).value
    assert isinstance(error, WrongListener)
    assert isinstance(error, DispatcherUnavailable)
    assert str(error).startswith("the listener does not serve Stats: is the endpoint the right")
    assert not pump.clientIO.disconnecting


def test_next_worker_arguments_on_the_wire() -> None:
    """
    C{next_worker} sends exactly the arguments given, leaving out those that
    are C{None}.
    """
    frontend = Frontend().connected()
    frontend.client.next_worker(pool="gpu", timeout=2.5)
    frontend.client.next_worker()
    frontend.network.flush()
    assert frontend.script.sent(NextWorker.commandName) == [
        {"pool": b"gpu", "timeout": b"2.5"},
        {},
    ]


@pytest.mark.parametrize("client_class", [FrontendClient, SchedulerClient])
def test_async_context_manager_starts_and_stops(
    client_class: type[FrontendClient] | type[SchedulerClient],
) -> None:
    """
    Used as an async context manager, a client connects on entry and closes
    its connection on exit.
    """
    network = Network()
    script = Script(FRONTEND_COMMANDS + SCHEDULER_COMMANDS)
    script.auto[Stats.commandName] = STATS
    network.listen(FRONTEND_PORT, script.factory())
    network.listen(SCHEDULER_PORT, script.factory())
    endpoint = FRONTEND if client_class is FrontendClient else SCHEDULER
    client = client_class(network.reactor, endpoint)

    async def use() -> DispatcherStats:
        async with client as entered:
            assert entered is client
            network.complete()
            answered = client.stats()
            network.flush()
            return await answered

    d = Deferred.fromCoroutine(use())
    assert not fired(d)
    assert not pump_of(network).serverIO.disconnected
    network.flush()
    assert pump_of(network).serverIO.disconnected
    assert result_of(d) == DispatcherStats(**STATS)


def pump_of(network: Network) -> IOPump:
    """
    The network's only connection.
    """
    [pump] = network.pumps
    return pump


@implementer(IStreamClientEndpoint)
class NamedEndpoint:
    """
    An endpoint object that connects through another and counts its
    connection attempts.
    """

    def __init__(self, wrapped: IStreamClientEndpoint) -> None:
        self._wrapped = wrapped
        self.attempts = 0

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.attempts += 1
        return self._wrapped.connect(factory)

    def __str__(self) -> str:
        return "named:frontend"


def endpoint_object(network: Network) -> NamedEndpoint:
    """
    A L{NamedEndpoint} to the network's front-end port.
    """
    return NamedEndpoint(TCP4ClientEndpoint(network.reactor, "127.0.0.1", FRONTEND_PORT))


def test_endpoint_object_connects() -> None:
    """
    A client given an object providing L{IStreamClientEndpoint} connects
    with it, and its calls are answered.
    """
    frontend = Frontend()
    endpoint = endpoint_object(frontend.network)
    client = FrontendClient(frontend.reactor, endpoint)
    client.start()
    frontend.network.complete()
    frontend.script.auto[Stats.commandName] = STATS
    d = client.stats()
    frontend.network.flush()
    assert result_of(d) == DispatcherStats(**STATS)
    assert endpoint.attempts == 1


def test_endpoint_object_described_by_str() -> None:
    """
    The C{endpoint} of a client given an endpoint object is the object's
    C{str()}, and its errors name it so.
    """
    network = Network()
    client = FrontendClient(network.reactor, endpoint_object(network), call_timeout=5.0)
    client.start()
    d = client.stats()
    network.reactor.advance(5.0)
    assert client.endpoint == "named:frontend"
    assert str(failure_of(d, DispatcherUnavailable).value) == (
        "no connection to named:frontend within 5.0 s"
    )


def test_endpoint_neither_string_nor_endpoint_refused() -> None:
    """
    An C{endpoint} that is neither a string nor an endpoint object is
    refused at once with C{TypeError}.
    """
    with pytest.raises(TypeError, match="IStreamClientEndpoint"):
        FrontendClient(Network().reactor, 8750)  # type: ignore[arg-type]
