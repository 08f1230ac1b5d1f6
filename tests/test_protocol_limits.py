"""
What one connection may cost the dispatcher: the listeners' box limit, work
per reactor turn, back-pressure, idle timeout, connection caps, the TLS
handshake gate, and how much a peer's mistakes can make it log.

Each connection is a listener's protocol over a L{StringTransport} (a
producer-aware transport), its time a L{Clock}: nothing here is timed.
"""

from __future__ import annotations

from typing import Any, List, MutableMapping, Optional, cast

import pytest
from amp_dispatch_commands import ListWorkers, NextWorker, Overloaded
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from amp_dispatch.protocol._listening import (
    BYTES_PER_UNIT,
    COMMAND_COSTS,
    FREE_BOX_BYTES,
    GENERIC_COST,
    TURN_BUDGET,
)
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.server._listener import ListenerFactory
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport
from tests._memory import RawDispatcher, encode, lax, update

Logs = List[MutableMapping[str, Any]]

CONFIG = DispatcherConfig(idle_timeout=10.0, max_frontend_connections=3)


def events(logs: Logs, level: Optional[str] = None) -> List[str]:
    return [log["event"] for log in logs if level is None or log["log_level"] == level]


class TurnClock(Clock):
    """
    A L{Clock} that can run one reactor turn: the calls due when it starts,
    not those they make for the next turn (as C{advance(0)} would).
    """

    def turn(self) -> None:
        due = [call for call in self.calls if call.getTime() <= self.seconds()]
        for call in due:
            if call in self.calls:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class Listeners:
    """
    Both listeners of a dispatcher on a L{Clock}, one worker of huge
    capacity registered.
    """

    def __init__(self, config: DispatcherConfig = CONFIG) -> None:
        self.clock = TurnClock()
        self.store = open_memory_store(self.clock, config)
        self.store.update(WorkerReport("w1", "10.0.0.1", 9000, 10**9))
        self.listeners = build_listeners(self.store, self.clock, config)

    def connect(self, role: str = "frontend", transport: Optional[StringTransport] = None) -> Wire:
        factory = cast(ListenerFactory, getattr(self.listeners, role).factory)
        return Wire(factory, transport or StringTransport())


class Wire:
    """
    One connection of a listener over a L{StringTransport}.
    """

    def __init__(self, factory: ListenerFactory, transport: StringTransport) -> None:
        self.factory = factory
        self.protocol = factory.buildProtocol(None)
        self.transport = transport
        self.protocol.makeConnection(transport)

    def receive(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def answers(self) -> List[amp.AmpBox]:
        boxes: List[amp.AmpBox] = amp.parseString(self.transport.value())
        return boxes

    def close(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def paused(self) -> bool:
        return self.transport.producerState == "paused"


@pytest.fixture
def listeners() -> Listeners:
    return Listeners()


def stats(tag: int) -> bytes:
    return encode([(b"_ask", b"%d" % tag), (b"_command", b"Stats")])


def next_worker(tag: int) -> bytes:
    return encode([(b"_ask", b"%d" % tag), (b"_command", b"NextWorker")])


def worker_update(worker_id: str) -> bytes:
    return encode(
        [
            (b"_ask", b"u"),
            (b"_command", b"WorkerUpdate"),
            (b"worker_id", worker_id.encode()),
            (b"host", b"10.0.0.1"),
            (b"port", b"9000"),
            (b"capacity", b"1"),
        ]
    )


def tags(boxes: List[amp.AmpBox]) -> List[int]:
    return [int(box[b"_answer"]) for box in boxes]


# -- the box limit ------------------------------------------------------------


def test_long_value_closes_at_its_length(listeners: Listeners, logs: Logs) -> None:
    """
    A value whose length passes the box limit closes the connection as soon
    as its length is in, with one warning saying why; nothing is answered.
    """
    wire = listeners.connect()
    wire.receive(b"\x00\x01k" + (60_000).to_bytes(2, "big"))
    assert wire.transport.disconnecting
    assert wire.transport.value() == b""
    [dropped] = [log for log in logs if log["log_level"] == "warning"]
    assert (dropped["event"], dropped["reason"]) == ("connection dropped", "box over 16384 bytes")


def test_endless_box_closes_at_the_limit(listeners: Listeners, logs: Logs) -> None:
    """
    Small pairs of a box that never ends, one per read, close the connection
    once the box passes the limit, not before.
    """
    wire = listeners.connect()
    pair = encode([(b"k", b"v")])[:-2]
    reads = 0
    while not wire.transport.disconnecting:
        wire.receive(pair)
        reads += 1
    # The pair that would leave no room for the box's end marker is refused.
    assert reads == (16_384 - 2) // len(pair) + 1
    assert events(logs, "warning") == ["connection dropped"]


def test_nothing_read_after_drop(listeners: Listeners) -> None:
    """
    Once a connection is dropped for its framing, what it sends is not read.
    """
    wire = listeners.connect()
    wire.receive(b"\x01\x00")
    wire.receive(stats(1))
    assert wire.transport.value() == b""


def test_box_limit_configured(logs: Logs) -> None:
    """
    C{max_box_bytes} sets the limit: a 5,000-byte box passes 4,096.
    """
    listeners = Listeners(DispatcherConfig(max_box_bytes=4_096))
    wire = listeners.connect()
    wire.receive(encode([(b"_ask", b"1"), (b"_command", b"Stats"), (b"x", b"y" * 5_000)]))
    assert wire.transport.disconnecting
    assert [log["reason"] for log in logs if log["event"] == "connection dropped"] == [
        "box over 4096 bytes"
    ]


# -- work per turn ------------------------------------------------------------


def test_budget_per_turn(listeners: Listeners) -> None:
    """
    Of many boxes in one read, a turn's budget is answered; the connection
    stops reading and answers the rest on the next turns, in order.
    """
    wire = listeners.connect()
    calls = 2 * TURN_BUDGET + 10
    wire.receive(b"".join(next_worker(n) for n in range(calls)))
    assert len(wire.answers()) == TURN_BUDGET
    assert wire.paused
    listeners.clock.turn()
    assert len(wire.answers()) == 2 * TURN_BUDGET
    assert wire.paused
    listeners.clock.turn()
    assert tags(wire.answers()) == list(range(calls))
    assert not wire.paused


def test_reads_while_waiting_keep_their_turn(listeners: Listeners) -> None:
    """
    Bytes that arrive while a backlog waits for its turn are answered after
    it, in order.
    """
    wire = listeners.connect()
    wire.receive(b"".join(stats(n) for n in range(TURN_BUDGET + 1)))
    wire.receive(stats(TURN_BUDGET + 1)[:5])
    wire.receive(stats(TURN_BUDGET + 1)[5:])
    assert len(wire.answers()) == TURN_BUDGET
    listeners.clock.advance(0)
    assert tags(wire.answers()) == list(range(TURN_BUDGET + 2))


def test_generic_boxes_cost_more(listeners: Listeners) -> None:
    """
    A box handled by the generic path (here an invalid C{NextWorker}) costs
    L{GENERIC_COST} of the budget.
    """
    wire = listeners.connect()
    bad = encode([(b"_ask", b"1"), (b"_command", b"NextWorker"), (b"pool", b"")])
    wire.receive(bad * TURN_BUDGET)
    assert len(wire.answers()) == TURN_BUDGET // GENERIC_COST


def test_list_workers_costs_two_turns(listeners: Listeners) -> None:
    """
    A C{ListWorkers} page is worth two turns: one page is answered, then
    the connection sits a turn out before the next.
    """
    assert COMMAND_COSTS[b"ListWorkers"] == 2 * TURN_BUDGET
    wire = listeners.connect("scheduler")
    call = encode([(b"_ask", b"1"), (b"_command", ListWorkers.commandName)])
    wire.receive(call * 5)
    assert len(wire.answers()) == 1
    listeners.clock.turn()
    assert len(wire.answers()) == 1
    listeners.clock.turn()
    assert len(wire.answers()) == 2


def test_big_boxes_cost_their_bytes(listeners: Listeners) -> None:
    """
    A box parsed into a dict costs one more unit per L{BYTES_PER_UNIT} of its
    bytes past L{FREE_BOX_BYTES}, even on the fast path: here C{Stats} boxes
    with an unknown argument making each 1,280 bytes.
    """
    wire = listeners.connect()
    pairs = [(b"_ask", b"1"), (b"_command", b"Stats")]
    filler = 1_280 - len(encode(pairs)) - 5
    call = encode([*pairs, (b"x", b"y" * filler)])
    assert len(call) == 1_280
    wire.receive(call * 100)
    per_box = 1 + (1_280 - FREE_BOX_BYTES) // BYTES_PER_UNIT
    assert len(wire.answers()) == -(-TURN_BUDGET // per_box)


def test_stats_on_the_fast_path(listeners: Listeners) -> None:
    """
    C{Stats} is answered on the fast path (a budget's worth per turn), on
    both listeners, with the counters.
    """
    for role in ("frontend", "scheduler"):
        wire = listeners.connect(role)
        wire.receive(stats(7) * (TURN_BUDGET + 1))
        answers = wire.answers()
        assert len(answers) == TURN_BUDGET
        assert answers[0] == {
            b"_answer": b"7",
            b"workers": b"1",
            b"free_slots": b"1000000000",
            b"waiting": b"0",
            b"dispatched": b"0",
            b"protocol": b"1",
        }


# -- back-pressure --------------------------------------------------------------


class FillingTransport(StringTransport):
    """
    A transport whose buffer is full once C{room} bytes are written and
    unread: it pauses its producer then, as Twisted's TCP transport does.
    """

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.room and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.clear()
        self.room = 1 << 30
        assert self.producer is not None
        self.producer.resumeProducing()


def test_registered_as_producer(listeners: Listeners) -> None:
    """
    Each connection is its transport's streaming producer.
    """
    wire = listeners.connect()
    assert (wire.transport.producer, wire.transport.streaming) == (wire.protocol, True)


def test_no_reading_while_answers_unread(listeners: Listeners) -> None:
    """
    When the transport says its buffer is full, the connection stops reading
    and answers nothing more; once it drains, the rest is answered on the
    next turn and reading goes on.
    """
    wire = listeners.connect("frontend", FillingTransport(room=0))
    wire.receive(next_worker(1) + next_worker(2))
    assert wire.paused
    wire.receive(next_worker(3))
    assert tags(wire.answers()) == [1, 2]
    cast(FillingTransport, wire.transport).drain()
    listeners.clock.advance(0)
    assert tags(wire.answers()) == [3]
    assert not wire.paused


def test_blocked_between_generic_boxes(listeners: Listeners) -> None:
    """
    A full buffer stops the handling of a read between two boxes of the
    generic path; the rest waits for the drain.
    """
    wire = listeners.connect("frontend", FillingTransport(room=0))
    bad = [
        encode([(b"_ask", b"%d" % n), (b"_command", b"NextWorker"), (b"pool", b"")])
        for n in range(3)
    ]
    wire.receive(b"".join(bad))
    assert [int(box[b"_error"]) for box in wire.answers()] == [0]
    cast(FillingTransport, wire.transport).drain()
    listeners.clock.advance(0)
    assert [int(box[b"_error"]) for box in wire.answers()] == [1, 2]


def test_memory_bounded_when_never_read(listeners: Listeners) -> None:
    """
    A peer that sends calls and never reads their answers: once the
    transport's buffer is full the connection stops reading, having written
    at most one turn's answers past it, however long the peer goes on.
    """
    room = 65_536
    wire = listeners.connect("frontend", FillingTransport(room=room))
    sent = 0
    for _ in range(50):
        if not wire.paused:  # a paused transport delivers nothing
            wire.receive(b"".join(next_worker(n) for n in range(sent, sent + TURN_BUDGET)))
            sent += TURN_BUDGET
        listeners.clock.advance(1)
    assert wire.paused
    assert room < len(wire.transport.value()) < room + TURN_BUDGET * 80
    assert listeners.store.stats().dispatched == sent


# -- idle timeout -------------------------------------------------------------


def test_idle_frontend_closed(listeners: Listeners, logs: Logs) -> None:
    """
    A front-end connection that sends nothing for C{idle_timeout} seconds
    is closed.
    """
    wire = listeners.connect()
    listeners.clock.advance(9.9)
    assert not wire.transport.disconnecting
    listeners.clock.advance(0.1)
    assert wire.transport.disconnecting
    assert "idle connection closed" in events(logs, "debug")


def test_reading_keeps_open(listeners: Listeners) -> None:
    """
    The idle time counts from the last byte received.
    """
    wire = listeners.connect()
    listeners.clock.advance(9)
    wire.receive(stats(1)[:3])
    listeners.clock.advance(9.9)
    assert not wire.transport.disconnecting
    listeners.clock.advance(0.1)
    assert wire.transport.disconnecting


def test_idle_counts_from_end_of_wait() -> None:
    """
    A connection whose waiting call was just answered is idle from then,
    not from its last byte.
    """
    memory = Listeners()
    memory.store.update(WorkerReport("w1", "10.0.0.1", 9000, 0))
    wire = memory.connect()
    wire.receive(encode([(b"_ask", b"1"), (b"_command", b"NextWorker"), (b"timeout", b"15")]))
    memory.clock.advance(15)
    assert wire.answers()[0][b"_error_code"] == b"NO_WORKER_AVAILABLE"
    memory.clock.advance(9.9)
    assert not wire.transport.disconnecting
    memory.clock.advance(0.1)
    assert wire.transport.disconnecting


def test_waiting_call_keeps_open() -> None:
    """
    A connection with a call waiting for a slot is not idle; once the call
    is over, it is.
    """
    memory = Listeners()
    memory.store.update(WorkerReport("w1", "10.0.0.1", 9000, 0))
    wire = memory.connect()
    wire.receive(encode([(b"_ask", b"1"), (b"_command", b"NextWorker"), (b"timeout", b"30")]))
    memory.clock.advance(20)
    assert not wire.transport.disconnecting
    memory.clock.advance(10)
    assert wire.answers()[0][b"_error_code"] == b"NO_WORKER_AVAILABLE"
    memory.clock.advance(10)
    assert wire.transport.disconnecting


def test_scheduler_never_idle(listeners: Listeners) -> None:
    """
    Scheduler connections are not closed for idleness (they hold workers).
    """
    wire = listeners.connect("scheduler")
    listeners.clock.advance(3600)
    assert not wire.transport.disconnecting


def test_no_idle_timeout() -> None:
    """
    An C{idle_timeout} of 0 keeps silent connections.
    """
    listeners = Listeners(DispatcherConfig(idle_timeout=0))
    wire = listeners.connect()
    listeners.clock.advance(3600)
    assert not wire.transport.disconnecting
    assert listeners.clock.getDelayedCalls() == []


# -- connection caps ----------------------------------------------------------


def test_cap_refuses(listeners: Listeners, logs: Logs) -> None:
    """
    A connection over the listener's cap is closed at once, with a warning.
    """
    open_wires = [listeners.connect() for _ in range(3)]
    refused = listeners.connect()
    assert refused.transport.disconnected
    assert not any(wire.transport.disconnecting for wire in open_wires)
    [warning] = [log for log in logs if log["event"] == "connection refused"]
    assert (warning["role"], warning["open"], warning["max_connections"]) == ("frontend", 3, 3)


def test_cap_freed_on_close(listeners: Listeners) -> None:
    """
    A closed connection frees its place.
    """
    wires = [listeners.connect() for _ in range(3)]
    wires[0].close()
    assert not listeners.connect().transport.disconnecting


def test_caps_per_listener(listeners: Listeners) -> None:
    """
    A full front-end listener leaves the scheduler listener's room alone.
    """
    for _ in range(4):
        listeners.connect()
    wire = listeners.connect("scheduler")
    wire.receive(stats(1))
    assert tags(wire.answers()) == [1]


def test_refusals_rate_limited(listeners: Listeners, logs: Logs) -> None:
    """
    Refusals are logged a few a second; the rest are counted in one line
    once the second is over.
    """
    for _ in range(3 + 20):
        listeners.connect()
    assert events(logs).count("connection refused") == 5
    listeners.clock.advance(1)
    [held] = [log for log in logs if log["event"] == "log lines suppressed"]
    assert (held["suppressed"], held["count"]) == ("connection refused", 15)


def test_scheduler_evicts_silent_connection(logs: Logs) -> None:
    """
    A full scheduler listener makes room for a new connection by closing
    the one silent the longest among those that hold no worker, with a
    warning.
    """
    listeners = Listeners(DispatcherConfig(max_scheduler_connections=2))
    older, newer = listeners.connect("scheduler"), listeners.connect("scheduler")
    listeners.clock.advance(5)
    older.receive(stats(1))
    listeners.clock.advance(5)
    newest = listeners.connect("scheduler")
    assert (older.transport.disconnected, newer.transport.disconnected) == (False, True)
    assert not newest.transport.disconnecting
    [evicted] = [log for log in logs if log["event"] == "connection evicted"]
    assert (evicted["role"], evicted["silent"]) == ("scheduler", 10.0)


def test_scheduler_keeps_connections_with_workers(logs: Logs) -> None:
    """
    Connections that hold workers are never evicted: with all of them
    holding some, the new connection is refused.
    """
    listeners = Listeners(DispatcherConfig(max_scheduler_connections=2))
    holders = [listeners.connect("scheduler") for _ in range(2)]
    for number, wire in enumerate(holders):
        wire.receive(worker_update(f"h{number}"))
    assert listeners.connect("scheduler").transport.disconnected
    assert not any(wire.transport.disconnected for wire in holders)
    assert "connection refused" in events(logs)


def test_evicted_place_taken_once() -> None:
    """
    An evicted connection's place goes to one new connection (even before
    it is gone): the next one evicts another.
    """
    listeners = Listeners(DispatcherConfig(max_scheduler_connections=2))
    silent = listeners.connect("scheduler")
    holder = listeners.connect("scheduler")
    holder.receive(worker_update("h"))
    third = listeners.connect("scheduler")
    assert silent.transport.disconnected and not third.transport.disconnected
    fourth = listeners.connect("scheduler")
    assert third.transport.disconnected and not fourth.transport.disconnected
    assert not holder.transport.disconnected


def test_frontend_refuses_rather_than_evicts(listeners: Listeners) -> None:
    """
    The front-end listener does not evict: the new connection is refused.
    """
    first = [listeners.connect() for _ in range(3)]
    assert listeners.connect().transport.disconnected
    assert not any(wire.transport.disconnected for wire in first)


def test_drops_rate_limited_per_listener(listeners: Listeners, logs: Logs) -> None:
    """
    Connections dropped for their framing are logged a few a second per
    listener, however many connections: reconnecting does not get around
    the limit.
    """
    for _ in range(12):
        wire = listeners.connect("scheduler")
        wire.receive(b"\x01\x00")
        wire.close()
    assert events(logs).count("connection dropped") == 5
    listeners.clock.advance(1)
    [held] = [log for log in logs if log["event"] == "log lines suppressed"]
    assert (held["suppressed"], held["count"]) == ("connection dropped", 7)


# -- TLS --------------------------------------------------------------------------


@implementer(ISSLTransport)
class TLSTransport(StringTransport):  # type: ignore[misc]
    """
    A transport that says it is TLS (over TCP); only what the listeners use
    of its interfaces is here.
    """

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def test_tls_starts_after_handshake(listeners: Listeners, logs: Logs) -> None:
    """
    On a TLS transport, the connection's AMP side starts once the handshake
    is done.
    """
    wire = listeners.connect("scheduler", TLSTransport())
    assert "connection opened" not in events(logs)
    cast(Any, wire.protocol).handshakeCompleted()
    assert "connection opened" in events(logs)
    wire.receive(stats(1))
    assert tags(wire.answers()) == [1]


def test_tls_handshake_failed(listeners: Listeners, logs: Logs) -> None:
    """
    A TLS connection lost before its handshake completed never reached AMP:
    one warning with the peer, and its place is free again.
    """
    wire = listeners.connect("scheduler", TLSTransport())
    wire.protocol.connectionLost(Failure(ConnectionDone("bad certificate")))
    [warning] = [log for log in logs if log["log_level"] == "warning"]
    assert (warning["event"], warning["peer"]) == ("tls handshake failed", "192.168.1.1:54321")
    assert "bad certificate" in warning["reason"]
    assert "connection closed" not in events(logs)
    assert wire.factory.open == 0


# -- what a peer can make us log ------------------------------------------------


def test_rejections_rate_limited(listeners: Listeners, logs: Logs) -> None:
    """
    A connection's rejected boxes are logged a few a second; the rest are
    counted in one line once the second is over.
    """
    wire = listeners.connect()
    wire.receive(encode([]) * 12)
    assert events(logs).count("input rejected") == 5
    listeners.clock.advance(1)
    [held] = [log for log in logs if log["event"] == "log lines suppressed"]
    assert (held["suppressed"], held["count"], held["role"]) == ("input rejected", 7, "frontend")


def test_held_back_reported_on_close(listeners: Listeners, logs: Logs) -> None:
    """
    What was held back is reported when the connection closes, too.
    """
    wire = listeners.connect()
    wire.receive(encode([]) * 7)
    wire.close()
    [held] = [log for log in logs if log["event"] == "log lines suppressed"]
    assert held["count"] == 2


def test_lines_limited_per_period(listeners: Listeners, logs: Logs) -> None:
    """
    Each new second allows a few lines again.
    """
    wire = listeners.connect()
    for _ in range(3):
        wire.receive(encode([]) * 6)
        listeners.clock.advance(1)
    assert events(logs).count("input rejected") == 15
    assert events(logs).count("log lines suppressed") == 3


def test_long_command_name_truncated(listeners: Listeners, logs: Logs) -> None:
    """
    The command name a rejection logs is cut at 200 characters, with its
    length.
    """
    wire = listeners.connect()
    wire.receive(encode([(b"_ask", b"1"), (b"_command", b"N" * 10_000)]))
    [rejected] = [log for log in logs if log["event"] == "input rejected"]
    assert rejected["command"] == "N" * 200 + "... (10000 bytes)"


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        (encode([(b"_answer", b"1")]), "an answer or error, but this listener makes no calls"),
        (encode([(b"_error", b"1")]), "an answer or error, but this listener makes no calls"),
        (encode([]), "an empty box"),
        (encode([(b"x", b"1")]), "not a command"),
        (encode([(b"_ask", b"1")]), "a call without _command"),
    ],
    ids=["answer", "error", "empty", "unknown-key", "ask-only"],
)
def test_not_a_call_logged_once(listeners: Listeners, logs: Logs, box: bytes, reason: str) -> None:
    """
    A box that is not a call is logged once, as a rejected input with why,
    without a traceback, and the connection stays.
    """
    wire = listeners.connect()
    wire.receive(box)
    assert [(log["event"], log["reason"]) for log in logs if log["log_level"] != "debug"] == [
        ("input rejected", reason)
    ]
    assert not wire.transport.disconnecting


def test_waiting_refusals_rate_limited(logs: Logs) -> None:
    """
    Waiting calls refused past the connection's share are logged a few a
    second, with the connection's peer.
    """
    listeners = Listeners(DispatcherConfig(max_waiting_per_connection=1))
    listeners.store.update(WorkerReport("w1", "10.0.0.1", 9000, 0))
    wire = listeners.connect()
    call = [(b"_command", b"NextWorker"), (b"timeout", b"30")]
    wire.receive(b"".join(encode([(b"_ask", b"%d" % n), *call]) for n in range(12)))
    refused = [log for log in logs if log["event"] == "waiting call refused"]
    assert len(refused) == 5
    assert (refused[0]["role"], refused[0]["peer"]) == ("frontend", "192.168.1.1:54321")
    assert "1 calls of this connection" in refused[0]["reason"]


def test_ask_only_answered_unhandled(listeners: Listeners) -> None:
    """
    A box with C{_ask} and no C{_command} is answered C{UNHANDLED}.
    """
    wire = listeners.connect()
    wire.receive(encode([(b"_ask", b"9")]))
    [error] = wire.answers()
    assert (error[b"_error"], error[b"_error_code"]) == (b"9", b"UNHANDLED")


# -- the share of waiting places --------------------------------------------------


def test_waiting_share(fast_path: bool) -> None:
    """
    One connection's waiting calls past its share are answered C{OVERLOADED}
    at once; another connection may still wait.
    """
    memory = RawDispatcher(max_waiting_per_connection=2, fast_path=fast_path)
    update(memory.scheduler(), "full", capacity=0)
    greedy = memory.frontend()
    waiting = [greedy.send(lax(NextWorker), timeout=b"30") for _ in range(2)]
    with pytest.raises(Overloaded, match="2 calls of this connection are already waiting"):
        greedy.send(lax(NextWorker), timeout=b"30").result()
    other = memory.frontend().send(lax(NextWorker), timeout=b"30")
    assert not other.done and not any(outcome.done for outcome in waiting)
    assert memory.stats()["waiting"] == 3
