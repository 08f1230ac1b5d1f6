"""
Clients of several replicas (L{FailoverEndpoint}, and the clients taking a
list of endpoints): a connection goes to the first endpoint that accepts,
starting with the one that last did.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectError, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from zope.interface import implementer

from amp_dispatch._records import Worker
from amp_dispatch.client import DispatcherUnavailable, FrontendClient, SchedulerClient
from amp_dispatch.client._connection import connector
from amp_dispatch.client._failover import FailoverEndpoint
from amp_dispatch.testing import MemoryDispatcher
from amp_dispatch.testing import _MemoryEndpoint as MemoryEndpoint
from tests._deferreds import failure_of, fired, result_of


@implementer(IStreamClientEndpoint)
class Scripted:
    """
    An endpoint that refuses, accepts, or holds each connection as told.
    """

    def __init__(self, name: str, refuse: bool = False) -> None:
        self.name = name
        self.refuse = refuse
        self.attempts = 0
        self.held: List[Deferred[IProtocol]] = []
        self.hold = False

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        self.attempts += 1
        if self.refuse:
            return fail(ConnectionRefusedError(self.name))
        if self.hold:
            held: Deferred[IProtocol] = Deferred()
            self.held.append(held)
            return held
        return succeed(Protocol())

    def __str__(self) -> str:
        return self.name


def test_first_that_accepts() -> None:
    """
    A refused endpoint is passed over at once, for the next.
    """
    first, second = Scripted("a", refuse=True), Scripted("b")
    failover = FailoverEndpoint([first, second], ["a", "b"])
    assert isinstance(result_of(failover.connect(Any)), Protocol)  # type: ignore[arg-type]
    assert (first.attempts, second.attempts) == (1, 1)


def test_starts_with_last_good() -> None:
    """
    The next connection tries first the endpoint that last accepted.
    """
    first, second = Scripted("a", refuse=True), Scripted("b")
    failover = FailoverEndpoint([first, second], ["a", "b"])
    result_of(failover.connect(Any))  # type: ignore[arg-type]
    first.refuse = False
    result_of(failover.connect(Any))  # type: ignore[arg-type]
    assert (first.attempts, second.attempts) == (1, 2)


def test_all_refused() -> None:
    """
    When none accepts, the connection fails naming each endpoint's failure.
    """
    failover = FailoverEndpoint([Scripted("a", True), Scripted("b", True)], ["a", "b"])
    failure = failure_of(failover.connect(Any), ConnectError)  # type: ignore[arg-type]
    assert "a: Connection was refused" in str(failure.value)
    assert "b: Connection was refused" in str(failure.value)


def test_cancelled_tries_no_further() -> None:
    """
    Cancelling the connection attempt cancels it; no other endpoint is
    tried.
    """
    first, second = Scripted("a"), Scripted("b")
    first.hold = True
    connecting = FailoverEndpoint([first, second], ["a", "b"]).connect(Any)  # type: ignore[arg-type]
    connecting.cancel()
    failure_of(connecting, CancelledError)
    assert second.attempts == 0


def test_connector_forms() -> None:
    """
    A list of one is that endpoint; of several, a L{FailoverEndpoint} named
    by theirs; an empty one is refused.
    """
    clock = Clock()
    one, name = connector(clock, [Scripted("a")])
    assert isinstance(one, Scripted) and name == "a"
    several, names = connector(clock, ["tcp:127.0.0.1:8750", Scripted("b")])
    assert isinstance(several, FailoverEndpoint)
    assert names == "tcp:127.0.0.1:8750, b"
    with pytest.raises(ValueError):
        connector(clock, [])


def test_client_moves_to_live_replica() -> None:
    """
    A front-end client given a dead replica first and a live one gets its
    answers from the live one, at once.
    """
    dispatcher = MemoryDispatcher()
    scheduler = dispatcher.scheduler_client()
    scheduler.update("w1", "10.0.0.1", 9000, capacity=1)
    dispatcher.flush()
    dead = Scripted("dead", refuse=True)
    frontend = FrontendClient(dispatcher.clock, [dead, MemoryEndpoint(dispatcher, "frontend")])
    frontend.start()
    answered = frontend.next_worker()
    dispatcher.flush()
    assert result_of(answered) == Worker("w1", "10.0.0.1", 9000)
    assert frontend.endpoint == "dead, memory:frontend"


def test_client_all_down_fails_with_each_cause() -> None:
    """
    With every replica down before the client ever connected, a call fails
    at once, once each replica was tried, naming each one's refusal.
    """
    clock = Clock()
    client = SchedulerClient(
        clock, [Scripted("a", True), Scripted("b", True)], retry_policy=lambda attempt: 1.0
    )
    client.start()  # its attempt tried both
    failure = failure_of(client.update("w1", "h", 1, 1), DispatcherUnavailable)
    assert "a: Connection was refused" in str(failure.value)
    assert "b: Connection was refused" in str(failure.value)
    assert fired(client.stop())
