"""
The contract guard: wire protocol v1 declared here from the issue's text
alone, with plain C{twisted.protocols.amp} types, and spoken to the real
dispatcher process.

This module must not import C{amp_dispatch} or C{amp_dispatch_commands}: if
the server's schema drifts from the text (a renamed command or argument, an
argument type that no longer parses the same bytes, an error code that
changed), these tests fail where the schema's own tests would not.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Tuple, Type

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.protocols import amp

from ._process import (
    LIVENESS_TIMEOUT,
    DispatcherLauncher,
    DispatcherProcess,
    RawAMP,
    RawBytes,
    call_remote,
    connect_raw,
    poll_until,
)

# -- protocol v1, from the text -------------------------------------------------


class NoWorkerAvailable(Exception):
    """
    C{NO_WORKER_AVAILABLE}: no worker of the pool has a free slot.
    """


class Overloaded(Exception):
    """
    C{OVERLOADED}: C{--max-waiting} calls already wait.
    """


class InvalidArgument(Exception):
    """
    C{INVALID_ARGUMENT}: an argument is missing, unparseable or out of range.
    """


class StoreUnavailable(Exception):
    """
    C{STORE_UNAVAILABLE}: the shared store did not answer (v1 since schema
    1.1; a dispatcher on its own memory never answers it).
    """


INVALID: Dict[Type[Exception], bytes] = {
    InvalidArgument: b"INVALID_ARGUMENT",
    StoreUnavailable: b"STORE_UNAVAILABLE",
}


class WorkerUpdate(amp.Command):
    commandName = b"WorkerUpdate"
    arguments = [
        (b"worker_id", amp.Unicode()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
        (b"capacity", amp.Integer()),
        (b"pool", amp.Unicode(optional=True)),
        (b"seq", amp.Integer(optional=True)),
        (b"ttl", amp.Float(optional=True)),
    ]
    response = [(b"accepted", amp.Boolean())]
    errors = INVALID


class WorkerGone(amp.Command):
    commandName = b"WorkerGone"
    arguments = [(b"worker_id", amp.Unicode())]
    response = [(b"known", amp.Boolean())]
    errors = INVALID


class NextWorker(amp.Command):
    commandName = b"NextWorker"
    arguments = [
        (b"pool", amp.Unicode(optional=True)),
        (b"timeout", amp.Float(optional=True)),
    ]
    response = [
        (b"worker_id", amp.Unicode()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
    ]
    errors = {
        NoWorkerAvailable: b"NO_WORKER_AVAILABLE",
        Overloaded: b"OVERLOADED",
        **INVALID,
    }


class Stats(amp.Command):
    commandName = b"Stats"
    arguments = []
    response = [
        (b"workers", amp.Integer()),
        (b"free_slots", amp.Integer()),
        (b"waiting", amp.Integer()),
        (b"dispatched", amp.Integer()),
        (b"protocol", amp.Integer()),
    ]
    errors = INVALID


class ListWorkers(amp.Command):
    commandName = b"ListWorkers"
    arguments = [
        (b"pool", amp.Unicode(optional=True)),
        (b"after", amp.Unicode(optional=True)),
        (b"limit", amp.Integer(optional=True)),
    ]
    response = [
        (
            b"workers",
            amp.AmpList(
                [
                    (b"worker_id", amp.Unicode()),
                    (b"host", amp.Unicode()),
                    (b"port", amp.Integer()),
                    (b"pool", amp.Unicode()),
                    (b"capacity", amp.Integer()),
                    (b"free", amp.Integer()),
                    (b"expires_in", amp.Float()),
                ]
            ),
        ),
        (b"next_after", amp.Unicode(optional=True)),
    ]
    errors = INVALID


# -- helpers ----------------------------------------------------------------------

Connect = Callable[[int], Awaitable[RawAMP]]
Answer = Dict[str, Any]


class Dispatcher:
    """
    Raw AMP connections to both listeners of one dispatcher process.
    """

    def __init__(self, reactor: Any, frontend: RawAMP, scheduler: RawAMP) -> None:
        self.reactor = reactor
        self.frontend = frontend
        self.scheduler = scheduler

    def front(self, command: Type[amp.Command], **arguments: Any) -> Deferred[Answer]:
        return call_remote(self.reactor, self.frontend, command, **arguments)

    def sched(self, command: Type[amp.Command], **arguments: Any) -> Deferred[Answer]:
        return call_remote(self.reactor, self.scheduler, command, **arguments)

    async def update(self, worker_id: str, capacity: int = 1, **more: Any) -> bool:
        answer = await self.sched(
            WorkerUpdate,
            worker_id=worker_id,
            host="127.0.0.1",
            port=more.pop("port", 9000),
            capacity=capacity,
            **more,
        )
        accepted: bool = answer["accepted"]
        return accepted

    async def ids(self, **arguments: Any) -> List[str]:
        page = await self.sched(ListWorkers, **arguments)
        return [row["worker_id"] for row in page["workers"]]


async def connect(reactor: Any, process: DispatcherProcess, amp_connect: Connect) -> Dispatcher:
    return Dispatcher(
        reactor,
        await amp_connect(process.frontend_port),
        await amp_connect(process.scheduler_port),
    )


@pytest_twisted.async_fixture
async def v1(reactor: Any, dispatcher: DispatcherProcess, amp_connect: Connect) -> Dispatcher:
    """
    Connections to a dispatcher with default options.
    """
    return await connect(reactor, dispatcher, amp_connect)


# -- the tests --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_stats_on_both_listeners(v1: Dispatcher) -> None:
    """
    Both listeners answer Stats; a fresh dispatcher reports protocol 1 and
    nothing else yet.
    """
    fresh = {"workers": 0, "free_slots": 0, "waiting": 0, "dispatched": 0, "protocol": 1}
    assert await v1.front(Stats) == fresh
    assert await v1.sched(Stats) == fresh


@pytest_twisted.ensureDeferred
async def test_worker_update_and_seq(v1: Dispatcher) -> None:
    """
    WorkerUpdate answers C{accepted}: true for a new worker or a higher seq,
    false for a lower (stale) or equal (duplicate) seq, which change nothing;
    an update without seq is accepted and forgets the stored seq.
    """
    assert await v1.update("w", capacity=1, seq=5) is True
    assert await v1.update("w", capacity=2, seq=4) is False
    assert await v1.update("w", capacity=3, seq=5) is False
    assert (await v1.sched(Stats))["free_slots"] == 1
    assert await v1.update("w", capacity=4, seq=6) is True
    assert await v1.update("w", capacity=5) is True
    assert await v1.update("w", capacity=6, seq=1) is True
    assert (await v1.sched(Stats))["free_slots"] == 6


@pytest_twisted.ensureDeferred
async def test_worker_update_moves_pool(v1: Dispatcher) -> None:
    """
    A worker updated with another pool leaves its old pool for the new one.
    """
    assert await v1.update("w", capacity=1) is True
    assert await v1.update("w", capacity=1, pool="gpu") is True
    assert await v1.ids(pool="default") == []
    assert await v1.ids(pool="gpu") == ["w"]
    answer = await v1.front(NextWorker, pool="gpu")
    assert answer["worker_id"] == "w"


@pytest_twisted.ensureDeferred
async def test_worker_gone(v1: Dispatcher) -> None:
    """
    WorkerGone removes the worker (C{known} true) and is idempotent
    (C{known} false after); the removed worker's seq is forgotten.
    """
    assert await v1.update("w", seq=10) is True
    assert await v1.sched(WorkerGone, worker_id="w") == {"known": True}
    assert await v1.sched(WorkerGone, worker_id="w") == {"known": False}
    assert await v1.ids() == []
    assert await v1.update("w", seq=1) is True


@pytest_twisted.ensureDeferred
async def test_next_worker(v1: Dispatcher) -> None:
    """
    NextWorker answers the worker's id, host and port, and counts as
    dispatched.
    """
    await v1.update("w", capacity=2, port=9123, pool="p")
    answer = await v1.front(NextWorker, pool="p")
    assert answer == {"worker_id": "w", "host": "127.0.0.1", "port": 9123}
    stats = await v1.front(Stats)
    assert (stats["dispatched"], stats["free_slots"]) == (1, 1)


@pytest_twisted.ensureDeferred
async def test_no_worker_available(v1: Dispatcher) -> None:
    """
    NO_WORKER_AVAILABLE: at once with no timeout or timeout 0, after the
    wait with a timeout; the connection stays open.
    """
    await v1.update("full", capacity=0)
    for arguments in ({}, {"timeout": 0.0}, {"timeout": 0.1}):
        with pytest.raises(NoWorkerAvailable):
            await v1.front(NextWorker, **arguments)
    assert (await v1.front(Stats))["waiting"] == 0


@pytest_twisted.ensureDeferred
async def test_waiting_next_worker_answered(v1: Dispatcher) -> None:
    """
    A NextWorker call with a timeout waits, and an update that frees a slot
    answers it.
    """
    waiting = v1.front(NextWorker, timeout=30.0)
    await poll_until(
        v1.reactor,
        lambda: v1.front(Stats),
        lambda stats: stats["waiting"] == 1,
        what="one waiting call",
    )
    await v1.update("w", capacity=1)
    assert (await waiting)["worker_id"] == "w"


@pytest_twisted.ensureDeferred
async def test_overloaded(
    reactor: Any, dispatchers: DispatcherLauncher, amp_connect: Connect
) -> None:
    """
    OVERLOADED answers a NextWorker call that would wait beyond
    C{--max-waiting}; the waiting one is still answered later.
    """
    process = await dispatchers.start(max_waiting=1)
    v1 = await connect(reactor, process, amp_connect)
    waiting = v1.front(NextWorker, timeout=30.0)
    await poll_until(
        reactor,
        lambda: v1.front(Stats),
        lambda stats: stats["waiting"] == 1,
        what="one waiting call",
    )
    with pytest.raises(Overloaded):
        await v1.front(NextWorker, timeout=30.0)
    await v1.update("w", capacity=1)
    assert (await waiting)["worker_id"] == "w"


@pytest_twisted.ensureDeferred
async def test_invalid_argument(v1: Dispatcher) -> None:
    """
    INVALID_ARGUMENT answers values out of range on every command that takes
    arguments; nothing changes and the connections stay open.
    """
    bad_updates: List[Dict[str, Any]] = [
        {"port": 0},
        {"port": 65536},
        {"capacity": -1},
        {"worker_id": ""},
        {"worker_id": "tab\there"},
        {"worker_id": "x" * 256},
        {"pool": ""},
        {"host": ""},
        {"ttl": -1.0},
        {"ttl": float("inf")},
        {"capacity": 1_000_000_001},
        {"seq": 2**63},
        {"seq": -(2**63) - 1},
        {"ttl": 86_400.5},
        {"ttl": 1e300},
    ]
    for bad in bad_updates:
        arguments = {"worker_id": "w", "host": "127.0.0.1", "port": 9000, "capacity": 1}
        arguments.update(bad)
        with pytest.raises(InvalidArgument):
            await v1.sched(WorkerUpdate, **arguments)
    with pytest.raises(InvalidArgument):
        await v1.sched(WorkerGone, worker_id="")
    for limit in (0, 501):
        with pytest.raises(InvalidArgument):
            await v1.sched(ListWorkers, limit=limit)
    for timeout in (-1.0, float("nan"), 3_600.5, 1e300):
        with pytest.raises(InvalidArgument):
            await v1.front(NextWorker, timeout=timeout)
    with pytest.raises(InvalidArgument):
        await v1.front(NextWorker, pool="\x00")
    with pytest.raises(InvalidArgument):
        await v1.sched(ListWorkers, after="x" * 256)
    # Integers of thousands of digits, refused on their length.
    for raw in (b"9" * 4300, b"0" * 33 + b"1"):
        with pytest.raises(amp.RemoteAmpError) as raised:
            await v1.scheduler.callRemoteString(
                b"WorkerUpdate", worker_id=b"w", host=b"h", port=b"9000", capacity=raw
            ).addTimeout(LIVENESS_TIMEOUT, v1.reactor)
        assert raised.value.errorCode == b"INVALID_ARGUMENT"
    assert (await v1.sched(Stats))["workers"] == 0
    assert (await v1.front(Stats))["waiting"] == 0
    assert v1.frontend.connected and v1.scheduler.connected


@pytest_twisted.ensureDeferred
async def test_unhandled_on_other_listener(v1: Dispatcher) -> None:
    """
    A command sent to the listener that does not serve it gets AMP's standard
    unhandled-command error and changes nothing.
    """
    with pytest.raises(amp.UnhandledCommand):
        await v1.front(WorkerUpdate, worker_id="w", host="127.0.0.1", port=9000, capacity=1)
    await v1.update("w")
    with pytest.raises(amp.UnhandledCommand):
        await v1.front(WorkerGone, worker_id="w")
    with pytest.raises(amp.UnhandledCommand):
        await v1.front(ListWorkers)
    with pytest.raises(amp.UnhandledCommand):
        await v1.sched(NextWorker)
    stats = await v1.front(Stats)
    assert (stats["workers"], stats["free_slots"], stats["dispatched"]) == (1, 1, 0)


@pytest_twisted.ensureDeferred
async def test_list_workers_paging(v1: Dispatcher) -> None:
    """
    ListWorkers pages in worker_id order after C{after}; C{next_after} is
    present only when more workers follow.
    """
    for worker_id in ("w3", "w1", "w5", "w2", "w4"):
        await v1.update(worker_id)
    first = await v1.sched(ListWorkers, limit=2)
    assert [row["worker_id"] for row in first["workers"]] == ["w1", "w2"]
    assert first["next_after"] == "w2"
    second = await v1.sched(ListWorkers, limit=2, after=first["next_after"])
    assert [row["worker_id"] for row in second["workers"]] == ["w3", "w4"]
    assert second["next_after"] == "w4"
    last = await v1.sched(ListWorkers, limit=2, after=second["next_after"])
    assert [row["worker_id"] for row in last["workers"]] == ["w5"]
    assert last["next_after"] is None
    # Absent on the wire, not sent empty: look at the raw answer box.
    raw = await v1.scheduler.callRemoteString(
        b"ListWorkers", limit=b"2", after=second["next_after"].encode()
    ).addTimeout(LIVENESS_TIMEOUT, v1.reactor)
    assert b"next_after" not in raw
    assert await v1.ids(after="w") == ["w1", "w2", "w3", "w4", "w5"]


@pytest_twisted.ensureDeferred
async def test_list_workers_default_page(v1: Dispatcher) -> None:
    """
    Without C{limit}, a ListWorkers page holds 100 workers.
    """
    for number in range(101):
        await v1.update(f"w{number:03d}")
    page = await v1.sched(ListWorkers)
    assert len(page["workers"]) == 100
    assert page["next_after"] == "w099"
    assert await v1.ids(after="w099") == ["w100"]


@pytest_twisted.ensureDeferred
async def test_list_workers_rows(v1: Dispatcher) -> None:
    """
    ListWorkers rows carry the worker's address, pool, capacity, free slots
    (capacity minus answers since) and C{expires_in} (-1 when no removal is
    pending, the seconds left of a ttl otherwise); C{pool} filters.
    """
    await v1.update("a", capacity=3, port=9001)
    await v1.update("b", capacity=2, port=9002, pool="gpu", ttl=600.0)
    await v1.front(NextWorker)
    page = await v1.sched(ListWorkers)
    a, b = page["workers"]
    assert a == {
        "worker_id": "a",
        "host": "127.0.0.1",
        "port": 9001,
        "pool": "default",
        "capacity": 3,
        "free": 2,
        "expires_in": -1.0,
    }
    assert (b["worker_id"], b["pool"], b["capacity"], b["free"]) == ("b", "gpu", 2, 2)
    assert 0 < b["expires_in"] <= 600.0
    assert await v1.ids(pool="gpu") == ["b"]


@pytest_twisted.ensureDeferred
async def test_bounds_accepted(v1: Dispatcher) -> None:
    """
    The upper bounds themselves are accepted: capacity 1,000,000,000, seq
    2**63 - 1 (and -2**63), ttl 86,400 s, timeout 3,600 s, an C{after} of
    255 bytes.
    """
    assert await v1.update("w", capacity=1_000_000_000, seq=-(2**63), ttl=86_400.0) is True
    assert await v1.update("w", capacity=1_000_000_000, seq=2**63 - 1, port=65535) is True
    answer = await v1.front(NextWorker, timeout=3_600.0)
    assert answer["worker_id"] == "w"
    assert (await v1.sched(ListWorkers, after="x" * 255))["workers"] == []
    assert (await v1.front(Stats))["free_slots"] == 999_999_999


def box(*pairs: Tuple[bytes, bytes]) -> bytes:
    """
    One AMP box of C{pairs}, framed.
    """
    framed = [
        len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value
        for key, value in pairs
    ]
    return b"".join(framed) + b"\x00\x00"


STATS = box((b"_ask", b"s"), (b"_command", b"Stats"))


@pytest.mark.parametrize(
    "sent",
    [
        box((b"_answer", b"1"), (b"workers", b"1")),
        box((b"_error", b"1"), (b"_error_code", b"X"), (b"_error_description", b"d")),
        box(),
        box((b"unknown", b"1")),
        box((b"_command", b"NextWorker")),
    ],
    ids=["answer", "error", "empty", "unknown-key", "command-without-ask"],
)
@pytest_twisted.ensureDeferred
async def test_boxes_answered_nothing(
    reactor: Any, dispatcher: DispatcherProcess, sent: bytes
) -> None:
    """
    A box that is not a call (an answer, an error, an empty box, a box of
    unknown keys, a command without C{_ask}) is answered nothing, changes
    nothing and keeps the connection: the C{Stats} after it is answered
    alone.
    """
    for port in (dispatcher.frontend_port, dispatcher.scheduler_port):
        raw = await connect_raw(reactor, port)
        raw.send(sent + STATS)
        [answer] = await poll_boxes(reactor, raw, 1)
        assert (answer[b"_answer"], answer[b"dispatched"]) == (b"s", b"0")
        assert raw.connected
        await raw.close(reactor)


@pytest_twisted.ensureDeferred
async def test_call_without_command(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    A box with C{_ask} but no C{_command} is answered AMP's C{UNHANDLED}
    error; the connection stays.
    """
    raw = await connect_raw(reactor, dispatcher.frontend_port)
    raw.send(box((b"_ask", b"q")) + STATS)
    error, answer = await poll_boxes(reactor, raw, 2)
    assert (error[b"_error"], error[b"_error_code"]) == (b"q", b"UNHANDLED")
    assert answer[b"_answer"] == b"s"
    await raw.close(reactor)


@pytest_twisted.ensureDeferred
async def test_unhandled_long_name(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    An unknown command of 12,000 bytes (within the default box limit) gets
    C{UNHANDLED}, its description naming the command truncated to 200 bytes
    and its length; the connection stays.
    """
    raw = await connect_raw(reactor, dispatcher.scheduler_port)
    name = b"N" * 12_000
    raw.send(box((b"_ask", b"u"), (b"_command", name)) + STATS)
    error, answer = await poll_boxes(reactor, raw, 2)
    assert error[b"_error_code"] == b"UNHANDLED"
    description = error[b"_error_description"].decode()
    assert description == f"Unhandled Command: b'{'N' * 200}'... (12000 bytes)"
    assert answer[b"_answer"] == b"s"
    await raw.close(reactor)


async def poll_boxes(reactor: Any, raw: RawBytes, count: int) -> List[amp.AmpBox]:
    """
    The first C{count} boxes C{raw} receives, once they have come.
    """

    async def received() -> List[amp.AmpBox]:
        return raw.boxes()

    boxes = await poll_until(
        reactor, received, lambda boxes: len(boxes) >= count, what=f"{count} boxes"
    )
    return boxes[:count]


@pytest_twisted.ensureDeferred
async def test_box_over_limit_closes(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    A box longer than the box limit (16,384 bytes by default) closes the
    connection, without an answer, as soon as a length says so: here the
    length of a 60,000-byte value, sent without the value.
    """
    raw = await connect_raw(reactor, dispatcher.frontend_port)
    raw.send(STATS + b"\x00\x01k" + (60_000).to_bytes(2, "big"))
    await raw.when_lost(reactor)
    assert [box[b"_answer"] for box in raw.boxes()] == [b"s"]
