"""
L{FrontendClient.next_worker}'s fast path (a pre-encoded box, answers read
with L{read_box}, one deadline timer per connection) against its generic path
(C{callRemote} through L{DispatcherConnection.call}), on one connection to a
raw listener whose bytes the tests read and write by hand, in memory on a
L{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
from amp_dispatch_commands import (
    INVALID_ARGUMENT,
    NO_WORKER_AVAILABLE,
    OVERLOADED,
    STORE_UNAVAILABLE,
    InvalidArgument,
    NextWorker,
    NoWorkerAvailable,
    Overloaded,
    Stats,
    StoreUnavailable,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.protocols import amp
from twisted.python.failure import Failure

from amp_dispatch.client import (
    CallTimedOut,
    DispatcherStats,
    DispatcherUnavailable,
    FrontendClient,
    Worker,
)
from amp_dispatch.client._calls import ClientProtocol
from amp_dispatch.client._frontend import _worker
from tests._client_helpers import (
    FRONTEND,
    FRONTEND_PORT,
    Network,
    fixed_retry,
)
from tests._deferreds import failure_of, fired, outcome_of, result_of

STATS = {"workers": 1, "free_slots": 2, "waiting": 0, "dispatched": 3, "protocol": 1}


class _Raw(Protocol):
    def __init__(self, listener: RawListener) -> None:
        self._listener = listener

    def connectionMade(self) -> None:
        self._listener.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self._listener.received += data


class RawListener:
    """
    A front-end listener stand-in that records the bytes it receives and
    sends whatever bytes the test gives it.
    """

    def __init__(self) -> None:
        self.received = b""
        self.connections: List[_Raw] = []

    def factory(self) -> ServerFactory:
        listener = self

        class _Factory(ServerFactory):
            def buildProtocol(self, addr: Optional[IAddress]) -> _Raw:
                return _Raw(listener)

        return _Factory()


class Wire:
    """
    A started L{FrontendClient} connected to a L{RawListener}.
    """

    def __init__(self, *, call_timeout: float = 5.0, **options: Any) -> None:
        self.network = Network()
        self.reactor = self.network.reactor
        self.listener = RawListener()
        self.network.listen(FRONTEND_PORT, self.listener.factory())
        self.client = FrontendClient(
            self.reactor, FRONTEND, call_timeout=call_timeout, retry_policy=fixed_retry, **options
        )
        self.client.start()
        self.pump = self.network.complete()

    @property
    def protocol(self) -> ClientProtocol:
        live = self.client._connection._live
        assert live is not None
        return live

    def received(self) -> bytes:
        """
        Every byte the listener received so far.
        """
        self.network.flush()
        return self.listener.received

    def clear(self) -> None:
        """
        Forget what the listener received so far.
        """
        self.network.flush()
        self.listener.received = b""

    def boxes(self) -> List[amp.AmpBox]:
        """
        Every box the listener received so far, parsed by Twisted's parser.
        """
        return list(amp.parseString(self.received()))

    def tags(self) -> List[bytes]:
        """
        The C{_ask} tag of every command received so far, in order.
        """
        return [box[amp.ASK] for box in self.boxes()]

    def send(self, *chunks: bytes) -> None:
        """
        Send C{chunks} to the client, each in a read of its own.
        """
        for chunk in chunks:
            self.listener.connections[-1].transport.write(chunk)  # type: ignore[union-attr]
            self.network.flush()

    def generic_next_worker(
        self, pool: Optional[str] = None, timeout: Optional[float] = None
    ) -> Deferred[Worker]:
        """
        C{next_worker} the generic way, as the client made every call before
        the fast path.
        """
        answered = self.client._connection.call(
            NextWorker, {"pool": pool, "timeout": timeout}, wait=timeout
        )
        return answered.addCallback(_worker)


def answer(tag: bytes, worker_id: str = "w1", host: str = "10.0.0.1", port: int = 9000) -> bytes:
    """
    The bytes of a C{NextWorker} answer, encoded by Twisted.
    """
    response = NextWorker.makeResponse({"worker_id": worker_id, "host": host, "port": port}, None)
    response[amp.ANSWER] = tag
    return bytes(response.serialize())


def error(tag: bytes, code: bytes, description: bytes = b"no") -> bytes:
    """
    The bytes of an error answer.
    """
    box = amp.AmpBox({amp.ERROR: tag, amp.ERROR_CODE: code, amp.ERROR_DESCRIPTION: description})
    return bytes(box.serialize())


def outcome(d: Deferred[Any]) -> Tuple[str, Any]:
    """
    What a fired Deferred came to (taken from it), comparable across paths:
    its result, or its exception's type, text and AMP error code.
    """
    result = outcome_of(d)
    if isinstance(result, Failure):
        value = result.value
        return ("error", (type(value), str(value), getattr(value, "errorCode", None)))
    return ("result", result)


def test_fast_path_used_when_connected() -> None:
    """
    On a live connection C{next_worker} goes the fast way: its call waits in
    the protocol's own table, not in AMP's.
    """
    wire = Wire()
    wire.client.next_worker()
    assert len(wire.protocol._fast) == 1
    assert wire.protocol._outstandingRequests == {}


@pytest.mark.parametrize(
    ("pool", "timeout"),
    [
        (None, None),
        ("gpu", None),
        (None, 2.5),
        ("gpu", 0),
        ("pööl", 1),
        ("p", 0.1),
        (None, -0.0),
        ("x" * 255, 1e-7),
    ],
)
def test_box_on_the_wire_is_call_remotes(pool: Optional[str], timeout: Optional[float]) -> None:
    """
    The fast path writes the very bytes C{callRemote} writes for the same
    call, tag aside (both take tags from the same counter).
    """
    wire = Wire()
    wire.client.next_worker(pool=pool, timeout=timeout)
    wire.client.next_worker(pool=pool, timeout=timeout)  # encoded once, reused
    fast = wire.received()
    wire.clear()
    wire.generic_next_worker(pool=pool, timeout=timeout)
    generic = wire.received()
    [first, second] = amp.parseString(fast)
    [third] = amp.parseString(generic)
    assert (first[amp.ASK], second[amp.ASK], third[amp.ASK]) == (b"1", b"2", b"3")
    assert fast == generic.replace(b"\x00\x013", b"\x00\x011") + generic.replace(
        b"\x00\x013", b"\x00\x012"
    )


def test_answer_fires_worker() -> None:
    """
    An answer fires the call with the L{Worker} it names.
    """
    wire = Wire()
    d = wire.client.next_worker(pool="gpu")
    [tag] = wire.tags()
    assert not fired(d)
    wire.send(answer(tag, "wörker", "h.example", 65535))
    assert result_of(d) == Worker("wörker", "h.example", 65535)
    assert wire.protocol._fast == {}


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (NO_WORKER_AVAILABLE, b"no free slot in pool 'default'"),
        (OVERLOADED, b"too many waiting"),
        (INVALID_ARGUMENT, b"pool: must not be empty"),
        (STORE_UNAVAILABLE, b"the store did not answer within 1.0 s"),
        (b"UNHANDLED", b"Unhandled Command: b'NextWorker'"),
        (b"UNKNOWN", b"Unknown Error"),
        (b"SOMETHING_NEW", b"caf\xc3\xa9 \xff"),
    ],
)
def test_errors_as_generic_path(code: bytes, description: bytes) -> None:
    """
    An error answer fails the fast call exactly as it fails the generic one:
    the schema's class for a declared code, L{amp.UnhandledCommand} or
    L{amp.UnknownRemoteError} else, with the dispatcher's description.
    """
    wire = Wire()
    fast = wire.client.next_worker()
    generic = wire.generic_next_worker()
    fast_tag, generic_tag = wire.tags()
    wire.send(error(fast_tag, code, description) + error(generic_tag, code, description))
    assert outcome(fast) == outcome(generic)
    assert not wire.pump.clientIO.disconnecting


def test_declared_errors_are_the_schemas() -> None:
    """
    The declared codes fail the call with the schema's own classes.
    """
    wire = Wire()
    calls = [wire.client.next_worker() for _ in range(4)]
    tags = wire.tags()
    wire.send(
        error(tags[0], NO_WORKER_AVAILABLE, b"none"),
        error(tags[1], OVERLOADED, b"full"),
        error(tags[2], INVALID_ARGUMENT, b"pool: bad"),
        error(tags[3], STORE_UNAVAILABLE, b"store down"),
    )
    assert str(failure_of(calls[0], NoWorkerAvailable).value) == "none"
    assert str(failure_of(calls[1], Overloaded).value) == "full"
    assert str(failure_of(calls[2], InvalidArgument).value) == "pool: bad"
    assert str(failure_of(calls[3], StoreUnavailable).value) == "store down"


@pytest.mark.parametrize(
    "response",
    [
        {b"host": b"h", b"port": b"1"},
        {b"worker_id": b"w", b"host": b"h", b"port": b"x"},
        {b"worker_id": b"\xff", b"host": b"h", b"port": b"1"},
    ],
)
def test_malformed_answer_as_generic_path(response: Dict[bytes, bytes]) -> None:
    """
    An answer the schema cannot parse fails the fast call as it fails the
    generic one, and the connection stays.
    """
    wire = Wire()
    fast = wire.client.next_worker()
    generic = wire.generic_next_worker()
    fast_tag, generic_tag = wire.tags()
    wire.send(
        amp.AmpBox({amp.ANSWER: fast_tag, **response}).serialize()
        + amp.AmpBox({amp.ANSWER: generic_tag, **response}).serialize()
    )
    malformed = outcome(generic)
    assert malformed[0] == "error"
    assert outcome(fast) == malformed
    assert not wire.pump.clientIO.disconnecting


def test_interleaved_with_generic_calls() -> None:
    """
    Fast and generic calls share the connection: each box goes out in the
    order of the calls, and each answer, whatever its order, fires its own
    call.
    """
    wire = Wire()
    first = wire.client.next_worker()
    stats = wire.client.stats()
    second = wire.client.next_worker(pool="p")
    boxes = wire.boxes()
    assert [box[amp.COMMAND] for box in boxes] == [b"NextWorker", b"Stats", b"NextWorker"]
    tags = [box[amp.ASK] for box in boxes]
    stats_answer = Stats.makeResponse(STATS, None)
    stats_answer[amp.ANSWER] = tags[1]
    wire.send(
        answer(tags[2], "w2") + stats_answer.serialize() + answer(tags[0], "w0"),
    )
    assert result_of(first).worker_id == "w0"
    assert result_of(second).worker_id == "w2"
    assert result_of(stats) == DispatcherStats(**STATS)


def test_answer_split_across_reads() -> None:
    """
    An answer that comes a byte at a time fires its call once it is whole,
    and the next answer starting in the same read is kept.
    """
    wire = Wire()
    first = wire.client.next_worker()
    second = wire.client.next_worker()
    tags = wire.tags()
    data = answer(tags[0], "w0") + answer(tags[1], "w1")
    whole = len(answer(tags[0], "w0"))
    for at in range(whole - 1):
        wire.send(data[at : at + 1])
        assert not fired(first)
    wire.send(data[whole - 1 : whole + 3])
    assert result_of(first).worker_id == "w0"
    assert not fired(second)
    wire.send(data[whole + 3 :])
    assert result_of(second).worker_id == "w1"


def test_many_answers_in_one_read_and_calls_made_meanwhile_batched() -> None:
    """
    Many answers in one read fire all their calls; the calls their callbacks
    make meanwhile go out in one write, after them.
    """
    wire = Wire()
    calls = [wire.client.next_worker() for _ in range(100)]
    tags = wire.tags()
    again: List[Deferred[Worker]] = []

    def call_again(worker: Worker) -> Worker:
        again.append(wire.client.next_worker())
        return worker

    for d in calls:
        d.addCallback(call_again)
    writes: List[bytes] = []
    transport: Any = wire.protocol.transport
    write = transport.write

    def counted(data: bytes) -> None:
        writes.append(data)
        write(data)

    transport.write = counted
    wire.send(b"".join(answer(tag, f"w{i}") for i, tag in enumerate(tags)))
    assert [result_of(d).worker_id for d in calls] == [f"w{i}" for i in range(100)]
    assert len(again) == 100
    assert len(writes) == 1
    assert [box[amp.COMMAND] for box in amp.parseString(writes[0])] == [b"NextWorker"] * 100


def test_generic_box_sent_meanwhile_keeps_its_place() -> None:
    """
    A generic call made from an answer's callback goes out after the fast
    calls made before it in the same read.
    """
    wire = Wire()
    calls = [wire.client.next_worker() for _ in range(2)]
    tags = wire.tags()
    calls[0].addCallback(lambda worker: wire.client.next_worker())
    calls[1].addCallback(lambda worker: (wire.client.stats(), worker)[1])
    calls[1].addCallback(lambda worker: wire.client.next_worker())
    wire.clear()
    wire.send(answer(tags[0]) + answer(tags[1]))
    assert [box[amp.COMMAND] for box in wire.boxes()] == [
        b"NextWorker",
        b"Stats",
        b"NextWorker",
    ]


def test_unanswered_call_times_out_as_generic() -> None:
    """
    A fast call sent but not answered fails with L{CallTimedOut} after
    exactly the call timeout (plus its own timeout), with the generic call's
    message.
    """
    wire = Wire(call_timeout=5.0)
    fast = wire.client.next_worker(timeout=2.0)
    generic = wire.generic_next_worker(timeout=2.0)
    wire.reactor.advance(6.9)
    assert not fired(fast)
    assert not fired(generic)
    wire.reactor.advance(0.1)
    assert (
        outcome(fast)
        == outcome(generic)
        == (
            "error",
            (CallTimedOut, f"no answer to NextWorker from {FRONTEND} within 7.0 s", None),
        )
    )


def test_late_answer_ignored_and_connection_kept() -> None:
    """
    An answer to a fast call that timed out is dropped; the connection stays
    and serves the next call.
    """
    wire = Wire(call_timeout=5.0)
    d = wire.client.next_worker()
    [tag] = wire.tags()
    wire.reactor.advance(5.0)
    failure_of(d, CallTimedOut)
    wire.send(answer(tag))
    assert not wire.pump.clientIO.disconnecting
    again = wire.client.next_worker()
    wire.send(answer(wire.tags()[-1], "w2"))
    assert result_of(again).worker_id == "w2"


def test_one_timer_for_many_calls_and_each_deadline_kept() -> None:
    """
    However many fast calls are pending, one timer keeps their deadlines;
    each call still fails at its own deadline, an earlier one made later
    included.
    """
    wire = Wire(call_timeout=5.0)
    before = len(wire.reactor.getDelayedCalls())
    waiting = wire.client.next_worker(timeout=10.0)  # 15 s
    wire.reactor.advance(1.0)
    quick = [wire.client.next_worker() for _ in range(50)]  # 6 s
    assert len(wire.reactor.getDelayedCalls()) == before + 1
    wire.reactor.advance(1.0)
    later = wire.client.next_worker()  # 7 s
    tags = wire.tags()
    wire.send(b"".join(answer(tag) for tag in tags[1:26]))
    wire.reactor.advance(3.9)
    assert not any(fired(d) for d in quick[25:])
    wire.reactor.advance(0.1)
    assert all(isinstance(result_of(d), Worker) for d in quick[:25])
    for d in quick[25:]:
        failure_of(d, CallTimedOut)
    assert not fired(later)
    wire.reactor.advance(1.0)
    failure_of(later, CallTimedOut)
    wire.reactor.advance(7.9)
    assert not fired(waiting)
    wire.reactor.advance(0.1)
    assert "within 15.0 s" in str(failure_of(waiting, CallTimedOut).value)
    assert len(wire.reactor.getDelayedCalls()) == before


def test_call_made_in_timeout_errback_gets_its_deadline() -> None:
    """
    A call made from the errback of one that timed out has a full deadline
    of its own.
    """
    wire = Wire(call_timeout=5.0)
    retried: List[Deferred[Worker]] = []
    wire.client.next_worker().addErrback(lambda _: retried.append(wire.client.next_worker()))
    wire.reactor.advance(5.0)
    wire.reactor.advance(4.9)
    assert not fired(retried[0])
    wire.reactor.advance(0.1)
    failure_of(retried[0], CallTimedOut)


def test_connection_lost_fails_fast_calls_as_generic() -> None:
    """
    Fast calls pending when the connection is lost fail as generic ones do,
    with L{DispatcherUnavailable}; timed-out ones are not failed again.
    """
    wire = Wire(call_timeout=5.0)
    timed_out = wire.client.next_worker()
    wire.reactor.advance(5.0)
    failure_of(timed_out, CallTimedOut)
    fast = [wire.client.next_worker() for _ in range(3)]
    generic = wire.generic_next_worker()
    wire.network.drop(wire.pump)
    lost = f"connection to {FRONTEND} lost before NextWorker was answered: "
    expected = outcome(generic)
    assert expected[1][0] is DispatcherUnavailable
    assert expected[1][1].startswith(lost)
    assert [outcome(d) for d in fast] == [expected] * 3
    assert wire.client._connection._live is None
    assert len(wire.reactor.getDelayedCalls()) == 1  # the reconnect


def test_call_made_as_connection_is_lost_waits_for_next_one() -> None:
    """
    A C{next_worker} made while the connection is being lost goes out on the
    next connection.
    """
    wire = Wire()
    retried: List[Deferred[Worker]] = []
    wire.client.next_worker().addErrback(lambda _: retried.append(wire.client.next_worker()))
    wire.network.drop(wire.pump)
    assert not fired(retried[0])
    wire.clear()
    wire.reactor.advance(1.0)
    wire.pump = wire.network.complete()
    wire.network.flush()
    [tag] = wire.tags()
    wire.send(answer(tag, "again"))
    assert result_of(retried[0]).worker_id == "again"


def test_key_too_long_drops_connection_as_generic() -> None:
    """
    A key over 255 bytes drops the connection and fails the calls, fast and
    generic alike, with L{DispatcherUnavailable}; the answers before it in
    the same read are taken.
    """
    wire = Wire()
    answered = wire.client.next_worker()
    fast = wire.client.next_worker()
    generic = wire.generic_next_worker()
    tags = wire.tags()
    wire.send(answer(tags[0]) + b"\x01\x00" + b"k" * 256)
    assert isinstance(result_of(answered), Worker)
    too_long = outcome(generic)
    assert too_long[1][0] is DispatcherUnavailable
    assert outcome(fast) == too_long
    assert wire.pump.clientIO.disconnected


def test_cancel_as_generic() -> None:
    """
    Cancelling a fast call fails it as cancelling a generic one does, and its
    answer is then ignored.
    """
    wire = Wire()
    fast = wire.client.next_worker()
    generic = wire.generic_next_worker()
    fast.cancel()
    generic.cancel()
    cancelled = outcome(generic)
    assert cancelled[1][0] is DispatcherUnavailable
    assert outcome(fast) == cancelled
    fast_tag, generic_tag = wire.tags()
    wire.send(answer(fast_tag) + answer(generic_tag))
    assert not wire.pump.clientIO.disconnecting
    assert wire.protocol._fast == {}


def test_after_stop_goes_the_generic_way() -> None:
    """
    Once the client is stopping, C{next_worker} sends nothing and fails with
    L{DispatcherUnavailable}.
    """
    wire = Wire()
    wire.client.stop()
    d = wire.client.next_worker()
    wire.network.flush()
    wire.reactor.advance(0)
    failure_of(d, DispatcherUnavailable)
    assert wire.received() == b""


def test_invalid_arguments_refused_at_once_while_connected() -> None:
    """
    Arguments the schema refuses fail the call at once with the generic
    path's L{InvalidArgument}, and nothing is sent.
    """
    wire = Wire()
    for pool, timeout in [("", None), (None, True), (None, float("nan")), (b"p", None)]:
        failure_of(wire.client.next_worker(pool=pool, timeout=timeout), InvalidArgument)  # type: ignore[arg-type]
    assert wire.received() == b""


_ERROR_CODES = [
    NO_WORKER_AVAILABLE,
    OVERLOADED,
    INVALID_ARGUMENT,
    STORE_UNAVAILABLE,
    b"UNHANDLED",
    b"OTHER",
]


@settings(max_examples=60, deadline=None)
@given(
    replies=st.lists(
        st.one_of(
            st.tuples(st.just("answer"), st.text(min_size=1, max_size=20), st.integers(1, 65535)),
            st.tuples(st.just("error"), st.sampled_from(_ERROR_CODES), st.binary(max_size=30)),
        ),
        min_size=1,
        max_size=12,
    ),
    order=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_random_answers_split_anywhere_as_generic(
    replies: List[Tuple[str, Any, Any]], order: Any, cuts: List[int]
) -> None:
    """
    The same replies, to fast and generic calls, in any order and split at
    any points, fire both kinds of call alike.
    """
    wire = Wire()
    pairs = [(wire.client.next_worker(), wire.generic_next_worker()) for _ in replies]
    tags = wire.tags()
    encoded: List[bytes] = []
    for i, (kind, first, second) in enumerate(replies):
        for tag in tags[2 * i : 2 * i + 2]:
            if kind == "answer":
                encoded.append(answer(tag, first, "h", second))
            else:
                encoded.append(error(tag, first, second))
    order.shuffle(encoded)
    data = b"".join(encoded)
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    for start, end in zip(points, points[1:]):
        wire.send(data[start:end])
    for fast, generic in pairs:
        assert outcome(fast) == outcome(generic)
    assert not wire.pump.clientIO.disconnecting
