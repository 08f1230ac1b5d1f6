"""
The C{WorkerUpdate} fast path (L{SchedulerProtocol}) against Twisted's generic
AMP box protocol on the scheduler listener.

Both listeners are fed the same bytes in the same reads over
L{StringTransport}s, each over its own queue in the same state on its own
L{Clock}, and must write the same bytes, drop the connection and let errors
escape C{dataReceived} at the same points, log the same events (at every
level) and leave their queues in the same state: after the reads, after the
workers' ttls run out, and after the connection is lost and the lease grace
of its workers runs out (or not).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Type, cast

import pytest
import structlog
from amp_dispatch_commands import INVALID_ARGUMENT
from hypothesis import event, given
from hypothesis import strategies as st
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import provider

from amp_dispatch.protocol._roles import SchedulerProtocol
from amp_dispatch.store._interface import WorkerReport
from tests._memory import (
    COMPARISON_SETTINGS,
    TAGS,
    ListenerSide,
    Registration,
    assert_same,
    encode,
    registered,
    replay,
    streams,
    with_extra_key,
)

Pairs = List[Tuple[bytes, bytes]]

#: The owner of the updates another scheduler connection sends.
OTHER_SCHEDULER = "another scheduler connection"


@pytest.fixture(autouse=True, scope="module")
def _everyLevel() -> Iterator[None]:
    """
    Let structlog pass events of every level (conftest drops those below
    warning), so the comparisons see the queue's info and debug events too.
    """
    wrapper_class = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(wrapper_class=wrapper_class)


class Side(ListenerSide):
    """
    One scheduler listener connection over its own queue, connected to a
    L{StringTransport}; the failures logged through Twisted are kept too.
    """

    listener = "scheduler"

    def __init__(
        self, fast_path: bool, workers: Iterable[Registration] = (), lease_grace: float = 30.0
    ) -> None:
        self.failures: List[Type[BaseException]] = []
        super().__init__(fast_path, workers, lease_grace=lease_grace)

    @contextmanager
    def _watch(self) -> Iterator[None]:
        """
        Keep the structlog events and the types of the failures logged through
        Twisted while the block runs.
        """

        @provider(ILogObserver)
        def observe(logged: LogEvent) -> None:
            failure = logged.get("log_failure")
            if isinstance(failure, Failure) and failure.value is not None:
                self.failures.append(type(failure.value))

        globalLogPublisher.addObserver(observe)
        try:
            with super()._watch():
                yield
        finally:
            globalLogPublisher.removeObserver(observe)

    def update(self, registration: Registration) -> None:
        """
        A C{WorkerUpdate} from another scheduler connection.
        """
        with self._watch():
            self.store.update(WorkerReport(**registration), OTHER_SCHEDULER)

    def gone(self, worker_id: str) -> None:
        """
        A C{WorkerGone} from another scheduler connection.
        """
        with self._watch():
            self.store.gone(worker_id)

    def observed(self) -> Dict[str, Any]:
        """
        Everything the two listeners must agree on.
        """
        return {**super().observed(), "twisted failures": self.failures}


def both(workers: Iterable[Registration] = (), lease_grace: float = 30.0) -> Tuple[Side, Side]:
    """
    A fast and a generic scheduler connection, over queues in the same state.
    """
    return Side.both(workers, lease_grace=lease_grace)


def generic_boxes(side: Side) -> List[amp.AmpBox]:
    """
    From now on, keep the boxes the fast path hands to its generic receiver.
    """
    assert isinstance(side.protocol, SchedulerProtocol)
    responder = side.protocol._receiver
    handed: List[amp.AmpBox] = []
    received: Callable[[amp.AmpBox], None] = responder.ampBoxReceived

    def ampBoxReceived(box: amp.AmpBox) -> None:
        handed.append(box)
        received(box)

    responder.ampBoxReceived = ampBoxReceived  # type: ignore[method-assign]
    return handed


def worker_update(tag: Optional[bytes] = b"1", **arguments: bytes) -> bytes:
    """
    A C{WorkerUpdate} box as a Twisted client sends it (keys sorted).
    """
    box = amp.AmpBox({b"_command": b"WorkerUpdate"})
    if tag is not None:
        box[b"_ask"] = tag
    box.update({name.encode(): value for name, value in arguments.items()})
    return cast(bytes, box.serialize())


TYPICAL: Dict[str, bytes] = {
    "worker_id": b"w1",
    "host": b"10.0.0.1",
    "port": b"9000",
    "capacity": b"2",
}

TYPICAL_WORKERS: List[Registration] = [
    {"worker_id": "w1", "host": "10.0.0.1", "port": 9000, "capacity": 2, "seq": 2},
    {"worker_id": "w2", "host": "10.0.0.2", "port": 9000, "capacity": 1, "pool": "gpu", "ttl": 3.0},
]


# -- the byte streams ---------------------------------------------------------

#: Each argument of C{WorkerUpdate}: values it accepts, values it refuses.
FIELDS: Dict[bytes, Tuple[List[bytes], List[bytes]]] = {
    b"worker_id": (
        [b"w1", b"w2", b"w3", b"w1", b"w2", b"w3", b"x" * 255, "\u00e9".encode() * 127],
        [
            b"",
            b"x" * 256,
            "\u00e9".encode() * 128,
            b"w\n",
            b"w\x00",
            "w\u0085".encode(),
            b"\xff",
            b"w\xc3",
            b"\xed\xa0\x80",
        ],
    ),
    b"host": (
        [b"10.0.0.1", b"10.0.0.2", b"10.0.0.1", "h\u00f4te".encode(), b"h\tost"],
        [b"", b"h" * 256, b"\xff\xfe"],
    ),
    b"port": (
        [b"9000", b"9001", b"9000", b"1", b"65535", b" 80 ", b"+80", b"0080"],
        [b"abc", b"0", b"65536", b"-1", b"", b"1.0", b"9" * 30],
    ),
    b"capacity": ([b"0", b"1", b"2", b"3", b"0", b"1", b"9" * 30], [b"-1", b"x", b"", b"1.5"]),
    b"pool": (
        [b"default", b"gpu", b"default", b"gpu", b"other", "\u00e9".encode()],
        [b"", b"\xff\xfe", b"gpu\n", b"p" * 256, b"\x7f"],
    ),
    b"seq": (
        [b"1", b"2", b"3", b"1", b"2", b"3", b"-5", b" 3", b"0", b"1_0"],
        [b"abc", b"", b"1.0", b"0x1"],
    ),
    b"ttl": (
        [b"0", b"0.0", b"1.5", b"3", b"-0", b"1e-9", b"3.0", b"1.5"],
        [b"nan", b"inf", b"-1", b"abc", b"1e999", b"", b"-inf"],
    ),
}
REQUIRED = [b"worker_id", b"host", b"port", b"capacity"]
OPTIONAL = [b"pool", b"seq", b"ttl"]
FAULTS = st.sampled_from(["none"] * 8 + ["bad"] * 2 + ["missing"])


@st.composite
def update_arguments(draw: st.DrawFn) -> Pairs:
    """
    A C{WorkerUpdate}'s arguments: valid mostly (the optional ones or not),
    else one refused value or one required argument left out.
    """
    values = {name: draw(st.sampled_from(FIELDS[name][0])) for name in REQUIRED}
    for name in OPTIONAL:
        if draw(st.booleans()):
            values[name] = draw(st.sampled_from(FIELDS[name][0]))
    fault = draw(FAULTS)
    if fault == "bad":
        name = draw(st.sampled_from(list(FIELDS)))
        values[name] = draw(st.sampled_from(FIELDS[name][1]))
    elif fault == "missing":
        del values[draw(st.sampled_from(REQUIRED))]
    return list(values.items())


ANY_WORKER_ID = st.sampled_from(FIELDS[b"worker_id"][0] + FIELDS[b"worker_id"][1][:3])
ANY_POOL = st.sampled_from(FIELDS[b"pool"][0] + FIELDS[b"pool"][1][:2])
LIMITS = st.sampled_from([b"1", b"2", b"500", b"0", b"501", b"x"])
UNKNOWN_KEYS = st.sampled_from([b"x", b"priority", b"k" * 255])
EXTRA_KINDS = st.sampled_from(["none"] * 40 + ["unknown"] * 4 + ["repeated"] * 4 + ["reserved"])
COMMANDS = st.sampled_from(
    [b"WorkerUpdate"] * 10 + [b"WorkerGone", b"ListWorkers", b"Stats", b"NextWorker", b"?"]
)


def repeated_values(key: bytes) -> st.SearchStrategy[bytes]:
    """
    The values a repeated C{key} may take: those of the argument it names,
    accepted or refused, else a few others.
    """
    accepted, refused = FIELDS.get(key, ([b"w1", b"WorkerUpdate", b"Stats"], [b""]))
    return st.sampled_from(accepted + refused)


@st.composite
def command_boxes(draw: st.DrawFn) -> bytes:
    """
    A command box: C{WorkerUpdate} mostly, with or without C{_ask} and extra
    keys (unknown, reserved or repeated), in any order; else another command
    of the listener, C{NextWorker} (not served here) or an unknown one.
    """
    command = draw(COMMANDS)
    pairs: Pairs = [(b"_command", command)]
    if command == b"WorkerUpdate":
        pairs += draw(update_arguments())
    elif command == b"WorkerGone":
        if draw(st.integers(0, 5)):
            pairs.append((b"worker_id", draw(ANY_WORKER_ID)))
    elif command == b"ListWorkers":
        for name, values in ((b"pool", ANY_POOL), (b"after", ANY_WORKER_ID), (b"limit", LIMITS)):
            if draw(st.booleans()):
                pairs.append((name, draw(values)))
    elif command == b"NextWorker" and draw(st.booleans()):
        pairs.append((b"pool", draw(ANY_POOL)))
    if draw(st.integers(0, 7)):
        pairs.append((b"_ask", draw(TAGS)))
    return with_extra_key(draw, pairs, EXTRA_KINDS, UNKNOWN_KEYS, repeated_values)


WORKER_IDS = ["w1", "w2", "w3"]
REGISTRATIONS: st.SearchStrategy[Registration] = st.builds(
    dict,
    worker_id=st.sampled_from(WORKER_IDS),
    host=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    port=st.sampled_from([9000, 9001]),
    capacity=st.integers(0, 3),
    pool=st.sampled_from(["default", "gpu"]),
    seq=st.sampled_from([None, 1, 2]),
    ttl=st.sampled_from([None, 3.0]),
)
#: What may happen between two reads.
EVENTS = st.one_of(
    st.none(),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.5])),
    st.tuples(st.just("update"), REGISTRATIONS),
    st.tuples(st.just("gone"), st.sampled_from(WORKER_IDS)),
)


@COMPARISON_SETTINGS
@given(
    workers=st.lists(REGISTRATIONS, max_size=3),
    lease_grace=st.sampled_from([0.0, 5.0]),
    stream=streams(command_boxes(), min_boxes=3, malformed_counts=[0, 0, 0, 1, 2]),
    data=st.data(),
)
def test_same_as_generic(
    workers: List[Registration],
    lease_grace: float,
    stream: bytes,
    data: st.DataObject,
) -> None:
    """
    Fed the same bytes in the same reads, with the same updates from another
    connection and clock steps between them, the fast path writes the same
    bytes as the generic path, drops the connection and lets errors escape at
    the same points, logs the same events and leaves the queue in the same
    state; so it does too when ttls run out, when the connection is lost and
    when the lease grace runs out.
    """
    fast, generic = both(workers, lease_grace)
    replay(fast, generic, stream, data, EVENTS)
    for seconds in (data.draw(st.sampled_from([0.0, 2.0, 10.0])), None, 2.5, 10.0):
        for side in (fast, generic):
            if seconds is None:
                side.close()
            else:
                side.advance(seconds)
        assert_same(fast, generic)
    # Seen with --hypothesis-show-statistics: how far the examples get.
    accepted = [box[b"accepted"] for box in fast.boxes if b"accepted" in box]
    event(f"answered {min(len(accepted), 3)}, accepted {min(accepted.count(b'True'), 3)}")
    for name in ("update stale", "update duplicate", "worker moved", "input rejected"):
        event(f"logged {name}: {any(log['event'] == name for log in fast.logs)}")
    for reason in ("ttl expired", "lease expired"):
        event(f"removed, {reason}: {any(log.get('reason') == reason for log in fast.logs)}")
    event(
        f"escaped {fast.error and fast.error[0].__name__}, dropped {fast.transport.disconnecting}"
    )


# -- the fast path's specifics ------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "accepted"),
    [
        (TYPICAL, b"True"),
        ({**TYPICAL, "pool": b"gpu", "seq": b"3", "ttl": b"10.0"}, b"True"),
        ({**TYPICAL, "seq": b"1"}, b"False"),
        ({**TYPICAL, "seq": b"2"}, b"False"),
    ],
    ids=["new", "all-arguments", "stale", "duplicate"],
)
def test_answer_bytes_identical(arguments: Dict[str, bytes], accepted: bytes) -> None:
    """
    A typical C{WorkerUpdate}'s answer is byte for byte the generic path's,
    and the fast path gives it without the generic responder.
    """
    fast, generic = both(TYPICAL_WORKERS)
    handed = generic_boxes(fast)
    for side in (fast, generic):
        side.receive(worker_update(b"7", **arguments))
    assert fast.transport.value() == generic.transport.value() != b""
    assert [box[b"accepted"] for box in fast.boxes] == [accepted]
    assert handed == []
    assert_same(fast, generic)


def test_pipelined_updates_one_write() -> None:
    """
    The answers to many C{WorkerUpdate}s in one read go out in one write.
    """
    fast = Side(True)
    fast.receive(
        b"".join(
            worker_update(b"%d" % (i,), **{**TYPICAL, "worker_id": b"w%d" % (i % 7,)})
            for i in range(50)
        )
    )
    assert (fast.transport.writes, len(fast.boxes)) == (1, 50)
    assert fast.store.stats().workers == 7


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", b"abc"),
        ("port", b"0"),
        ("port", b"65536"),
        ("capacity", b"-1"),
        ("worker_id", b""),
        ("worker_id", b"w\x01"),
        ("worker_id", b"\xff"),
        ("pool", b"p" * 256),
        ("ttl", b"nan"),
        ("ttl", b"inf"),
        ("ttl", b"-1"),
        ("seq", b"x"),
        ("host", None),
    ],
)
def test_invalid_update_answered_by_generic_path(field: str, value: Optional[bytes]) -> None:
    """
    An update with a bad (or missing) value goes to the generic responder,
    which answers C{INVALID_ARGUMENT} naming the field, logs the rejection
    once and changes nothing.
    """
    arguments = {name: raw for name, raw in TYPICAL.items() if name != field}
    if value is not None:
        arguments[field] = value
    fast, generic = both(TYPICAL_WORKERS)
    handed = generic_boxes(fast)
    before = list(registered(fast.store))
    for side in (fast, generic):
        side.receive(worker_update(b"9", **arguments))
    assert_same(fast, generic)
    [answer] = fast.boxes
    assert (answer[b"_error"], answer[b"_error_code"]) == (b"9", INVALID_ARGUMENT)
    assert answer[b"_error_description"].startswith(field.encode() + b":")
    assert len(handed) == 1
    rejected = [log for log in fast.logs if log["event"] == "input rejected"]
    assert [(log["command"], log["log_level"]) for log in rejected] == [("WorkerUpdate", "warning")]
    assert list(registered(fast.store)) == before


@pytest.mark.parametrize("lease_grace", [0.0, 5.0])
def test_lease_grace_after_fast_updates(lease_grace: float) -> None:
    """
    The connection owns the workers its fast-path updates registered: lost,
    they go after the lease grace, as on the generic path.
    """
    fast, generic = both(lease_grace=lease_grace)
    for side in (fast, generic):
        side.receive(worker_update(b"1", **TYPICAL) + worker_update(b"2", **TYPICAL))
        side.close()
    assert fast.store.stats().workers == (0 if lease_grace == 0 else 1)
    assert_same(fast, generic)
    for side in (fast, generic):
        side.advance(lease_grace + 0.1)
    assert fast.store.stats().workers == 0
    assert_same(fast, generic)


@pytest.mark.parametrize("reserved", [b"_answer", b"_error"])
def test_update_holding_answer_key_is_not_a_call(reserved: bytes) -> None:
    """
    A box that holds C{_answer} (or C{_error}) is an answer, whatever else it
    holds: a valid C{WorkerUpdate} with C{_ask} too registers nothing, is
    answered nothing and is logged as rejected; the connection stays, on
    both paths.
    """
    fast, generic = both()
    arguments = [(name.encode(), value) for name, value in TYPICAL.items()]
    box = encode([(b"_ask", b"1"), (b"_command", b"WorkerUpdate"), *arguments, (reserved, b"1")])
    for side in (fast, generic):
        side.receive(box)
    assert (fast.error, fast.sent, fast.transport.disconnecting) == (None, b"", False)
    assert fast.store.stats().workers == 0
    assert [log["event"] for log in fast.logs if log["log_level"] == "warning"] == [
        "input rejected"
    ]
    assert_same(fast, generic)


def test_update_without_ask_answers_nothing() -> None:
    """
    A C{WorkerUpdate} without C{_ask} (generic path) registers the worker and
    writes nothing; one with a bad value writes nothing either.
    """
    fast, generic = both()
    for side in (fast, generic):
        side.receive(
            worker_update(None, **TYPICAL) + worker_update(None, **{**TYPICAL, "port": b"0"})
        )
    assert (fast.sent, fast.store.stats().workers, fast.transport.disconnecting) == (b"", 1, False)
    assert_same(fast, generic)


def test_scheduler_kinds() -> None:
    """
    The comparison is between two different scheduler protocols: the fast
    path's and Twisted's generic box protocol.
    """
    fast, generic = both()
    assert isinstance(fast.protocol, SchedulerProtocol)
    assert isinstance(generic.protocol, amp.BinaryBoxProtocol)
