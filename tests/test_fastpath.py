"""
The C{NextWorker} fast path (L{FrontendProtocol}) against Twisted's generic AMP
box protocol on the front-end listener.

Both front ends are fed the same bytes over L{StringTransport}s, each over its
own queue in the same state, and must write the same bytes, drop the
connection at the same point, let the same errors escape C{dataReceived}
(where stock AMP lets them: the reactor would then close the connection), log
the same events and leave their queues in the same state.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple, cast

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.protocols import amp

from amp_dispatch._records import Worker
from amp_dispatch.protocol._roles import EncodedWorker, FrontendProtocol
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport
from tests._memory import (
    COMPARISON_SETTINGS,
    TAGS,
    ListenerSide,
    Registration,
    assert_same,
    encode,
    replay,
    streams,
    with_extra_key,
)

WORKER_IDS = ["w1", "w2", "w3", "g1"]
POOLS = ["default", "gpu", "busy"]
HOSTS = ["10.0.0.1", "10.0.0.2", "h\u00f4te.example"]
PORTS = [9000, 9001]

TYPICAL_WORKERS: List[Registration] = [
    {"worker_id": "w1", "host": "10.0.0.1", "port": 9000, "capacity": 2},
    {"worker_id": "g1", "host": "h\u00f4te.example", "port": 7000, "capacity": 1, "pool": "gpu"},
    {"worker_id": "full", "host": "10.0.0.3", "port": 9000, "capacity": 0, "pool": "busy"},
]


class Side(ListenerSide):
    """
    One front end over its own queue, connected to a L{StringTransport}.
    """

    listener = "frontend"

    def update(self, registration: Registration) -> None:
        """
        Apply a C{WorkerUpdate} to the queue, as the scheduler listener would.
        """
        with self._watch():
            self.store.update(WorkerReport(**registration))

    @property
    def written_closing(self) -> List[bytes]:
        """
        What was written while the connection was being lost (it reaches
        nobody), sorted: waiting calls are cancelled in no set order.
        """
        closing = amp._ParserHelper.parseString(self.transport.value()[len(self.sent) :])
        return sorted(box.serialize() for box in closing)


def both(workers: Iterable[Registration] = (), max_waiting: int = 10_000) -> Tuple[Side, Side]:
    """
    A fast and a generic front end, over queues in the same state.
    """
    return Side.both(workers, max_waiting=max_waiting)


def next_worker(tag: bytes = b"1", **arguments: bytes) -> bytes:
    """
    A C{NextWorker} box as a Twisted client sends it (keys sorted).
    """
    box = amp.AmpBox({b"_ask": tag, b"_command": b"NextWorker"})
    box.update({name.encode(): value for name, value in arguments.items()})
    return cast(bytes, box.serialize())


# -- the byte streams ---------------------------------------------------------

POOL_VALUES = st.sampled_from(
    [
        b"default",
        b"gpu",
        b"busy",
        b"default",
        b"gpu",
        b"nowhere",
        "\u00e9".encode(),
        b"",
        b"\xff\xfe",
        b"gpu\n",
        b"x" * 255,
        "\u00e9".encode() * 128,
    ]
)
TIMEOUT_VALUES = st.sampled_from(
    [b"0", b"0.0", b"-0", b"0.5", b"1", b"3", b" 2 ", b"abc", b"-1", b"nan", b"inf", b"1e999", b""]
)
UNKNOWN_KEYS = st.sampled_from([b"x", b"k" * 255])
EXTRA_KINDS = st.sampled_from(["none"] * 12 + ["unknown"] * 3 + ["repeated"] * 3 + ["reserved"] * 2)


@st.composite
def command_boxes(draw: st.DrawFn) -> bytes:
    """
    A command box: C{NextWorker} mostly, with or without C{_ask}, C{pool},
    C{timeout} and extra keys (unknown, reserved or repeated), in any order;
    else C{Stats}, a scheduler command or an unknown one.
    """
    command = draw(
        st.sampled_from(
            [b"NextWorker"] * 6 + [b"Stats", b"WorkerUpdate", b"WorkerGone", b"ListWorkers", b"?"]
        )
    )
    pairs = [(b"_command", command)]
    if draw(st.integers(0, 5)):
        pairs.append((b"_ask", draw(TAGS)))
    if command == b"NextWorker":
        if draw(st.booleans()):
            pairs.append((b"pool", draw(POOL_VALUES)))
        if draw(st.booleans()):
            pairs.append((b"timeout", draw(TIMEOUT_VALUES)))
    elif command == b"WorkerUpdate":
        pairs += [(b"worker_id", b"w1"), (b"host", b"h"), (b"port", b"1"), (b"capacity", b"9")]
    elif command == b"WorkerGone":
        pairs.append((b"worker_id", b"w1"))
    return with_extra_key(
        draw,
        pairs,
        EXTRA_KINDS,
        UNKNOWN_KEYS,
        lambda key: st.one_of(TAGS, POOL_VALUES, TIMEOUT_VALUES),
    )


REGISTRATIONS: st.SearchStrategy[Registration] = st.builds(
    dict,
    worker_id=st.sampled_from(WORKER_IDS),
    host=st.sampled_from(HOSTS),
    port=st.sampled_from(PORTS),
    capacity=st.integers(0, 3),
    pool=st.sampled_from(POOLS),
    ttl=st.sampled_from([None, 3.0]),
)
#: What may happen between two reads.
EVENTS = st.one_of(
    st.none(),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.5])),
    st.tuples(st.just("update"), REGISTRATIONS),
)


@COMPARISON_SETTINGS
@given(
    workers=st.lists(REGISTRATIONS, max_size=4),
    max_waiting=st.sampled_from([1, 2, 100]),
    stream=streams(command_boxes(), min_boxes=1, malformed_counts=[0, 0, 1, 2]),
    data=st.data(),
)
def test_same_as_generic(
    workers: List[Registration],
    max_waiting: int,
    stream: bytes,
    data: st.DataObject,
) -> None:
    """
    Fed the same bytes in the same reads, with the same updates and clock
    steps between them, the fast path writes the same bytes as the generic
    path, drops the connection and lets errors escape at the same points,
    logs the same events and leaves the queue in the same state; so it does
    too when the waiting calls time out and when the connection is lost.
    """
    fast, generic = both(TYPICAL_WORKERS + workers, max_waiting)
    replay(fast, generic, stream, data, EVENTS)
    for side in (fast, generic):
        side.advance(10.0)
    assert_same(fast, generic)
    for side in (fast, generic):
        side.close()
    assert_same(fast, generic)
    # Seen with --hypothesis-show-statistics: how far the examples get.
    event(f"answered {min(sum(b'worker_id' in box for box in fast.boxes), 3)}")
    event(
        f"escaped {fast.error and fast.error[0].__name__}, dropped {fast.transport.disconnecting}"
    )


# -- the fast path's specifics ------------------------------------------------


@pytest.mark.parametrize(
    "box",
    [
        next_worker(b"7"),
        next_worker(b"7", pool=b"gpu", timeout=b"0.0"),
        next_worker(b"7", pool=b"busy"),
    ],
    ids=["answer", "answer-pool", "no-worker"],
)
def test_answer_bytes_identical(box: bytes) -> None:
    """
    A typical C{NextWorker}'s answer (or C{NO_WORKER_AVAILABLE} error) is
    byte for byte the generic path's.
    """
    fast, generic = both(TYPICAL_WORKERS)
    for side in (fast, generic):
        side.receive(box)
    assert fast.transport.value() == generic.transport.value() != b""


@pytest.mark.parametrize(
    "arguments", [{}, {"pool": b"gpu"}, {"timeout": b"1.5"}], ids=["default", "pool", "timeout"]
)
def test_pipelined_calls_one_write(arguments: Dict[str, bytes]) -> None:
    """
    The answers to many C{NextWorker} calls in one read go out in one write.
    """
    pool = arguments.get("pool", b"default").decode()
    fast = Side(True, [{"worker_id": "w", "host": "h", "port": 1, "capacity": 100, "pool": pool}])
    fast.receive(b"".join(next_worker(b"%d" % (i,), **arguments) for i in range(50)))
    assert (fast.transport.writes, len(fast.boxes)) == (1, 50)


def test_answers_in_order_around_generic_boxes() -> None:
    """
    Answers of the fast path and of the generic path to calls in one read go
    out in the order of the calls.
    """
    fast = Side(True, TYPICAL_WORKERS)
    stats = cast(bytes, amp.AmpBox({b"_ask": b"2", b"_command": b"Stats"}).serialize())
    fast.receive(next_worker(b"1") + stats + next_worker(b"3"))
    assert [box[b"_answer"] for box in fast.boxes] == [b"1", b"2", b"3"]


@pytest.mark.parametrize(
    "box",
    [next_worker(b"1"), next_worker(b"1", pool=b"gpu", timeout=b"0")],
    ids=["default", "arguments"],
)
def test_byte_by_byte(box: bytes) -> None:
    """
    A C{NextWorker} box that arrives one byte per read is answered once, as
    when it arrives whole.
    """
    whole, bytewise = Side(True, TYPICAL_WORKERS), Side(True, TYPICAL_WORKERS)
    whole.receive(box)
    for i in range(len(box)):
        bytewise.receive(box[i : i + 1])
    assert bytewise.transport.value() == whole.transport.value() != b""


@pytest.mark.parametrize("change", [{"host": "192.0.2.9"}, {"port": 9999}], ids=["host", "port"])
def test_cached_answer_refreshed(change: Dict[str, Any]) -> None:
    """
    After an update changes a worker's host or port, its answers name the new
    address, not the one encoded for an earlier answer.
    """
    fast = Side(True)
    registration = {"worker_id": "w1", "host": "10.0.0.1", "port": 9000, "capacity": 1}
    fast.update(registration)
    fast.receive(next_worker(b"1"))
    fast.update({**registration, **change})
    fast.receive(next_worker(b"2"))
    expected = {**registration, **change}
    assert (fast.boxes[-1][b"host"], fast.boxes[-1][b"port"]) == (
        expected["host"].encode(),
        b"%d" % (expected["port"],),
    )


# -- differences from the generic path ----------------------------------------


@pytest.mark.parametrize("reserved", [b"_answer", b"_error"])
def test_next_worker_holding_answer_key_is_not_a_call(reserved: bytes) -> None:
    """
    A box that holds C{_answer} (or C{_error}) is an answer, whatever else it
    holds: with C{_ask} and C{_command: NextWorker} too, it takes no slot, is
    answered nothing and keeps the connection, on both paths.
    """
    fast, generic = both(TYPICAL_WORKERS)
    box = encode([(b"_ask", b"1"), (b"_command", b"NextWorker"), (reserved, b"1")])
    for side in (fast, generic):
        side.receive(box)
    assert (fast.error, fast.sent, fast.transport.disconnecting) == (None, b"", False)
    assert fast.store.stats().dispatched == 0
    assert_same(fast, generic)


def test_front_end_kinds() -> None:
    """
    The comparison is between two different front ends: the fast path's
    protocol and Twisted's generic box protocol.
    """
    fast, generic = both()
    assert isinstance(fast.protocol, FrontendProtocol)
    assert isinstance(generic.protocol, amp.BinaryBoxProtocol)


# -- the answers encoded once ---------------------------------------------------


def test_encoded_worker_equals_worker() -> None:
    """
    An L{EncodedWorker} is equal to the L{Worker} with its values (and
    hashes alike), and unequal to one with others.
    """
    encoded = EncodedWorker("w1", "10.0.0.1", 9000)
    assert encoded == Worker("w1", "10.0.0.1", 9000)
    assert Worker("w1", "10.0.0.1", 9000) == encoded
    assert hash(encoded) == hash(Worker("w1", "10.0.0.1", 9000))
    assert encoded != Worker("w1", "10.0.0.1", 9001)
    assert repr(encoded) == "EncodedWorker(worker_id='w1', host='10.0.0.1', port=9000)"


def test_store_answers_encoded_workers() -> None:
    """
    The store the server opens answers L{EncodedWorker}s: made when first
    answered, kept while the address stays, made anew when it changes.
    """
    store = open_memory_store(Clock())
    store.update(WorkerReport("w1", "10.0.0.1", 9000, 5))
    first = store.take("default")
    assert isinstance(first, EncodedWorker)
    assert store.take("default") is first
    store.update(WorkerReport("w1", "10.0.0.1", 9000, 5))
    assert store.take("default") is first
    store.update(WorkerReport("w1", "10.0.0.2", 9000, 5))
    moved = store.take("default")
    assert moved == Worker("w1", "10.0.0.2", 9000)
    assert moved is not first
