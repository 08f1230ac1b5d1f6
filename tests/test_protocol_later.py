"""
The listeners' protocols over a store whose answers come later (Deferreds),
as a store in another process answers: the fast paths answer as the generic
path does, in call order, and keep track of what waits.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Tuple
from unittest import mock

import pytest
from amp_dispatch_commands import STORE_UNAVAILABLE, NextWorker, Overloaded, StoreUnavailable
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

import tests._memory as memory_module
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import IWorkerStore, WorkerReport
from amp_dispatch.store._memory import MemoryStore
from tests import test_fastpath as front
from tests import test_fastpath_scheduler as sched
from tests._memory import (
    COMPARISON_SETTINGS,
    HandledCommands,
    RawDispatcher,
    assert_same,
    replay,
    streams,
)
from tests._stores import LaterStore

_build = build_listeners


@contextmanager
def later_listeners() -> Iterator[None]:
    """
    Listeners made meanwhile by the comparison helpers get their store's
    answers through L{LaterStore}.
    """

    def build(store: Any, *args: Any, **kwargs: Any) -> Any:
        return _build(LaterStore(store), *args, **kwargs)

    with mock.patch.object(memory_module, "build_listeners", build):
        yield


@COMPARISON_SETTINGS
@given(
    workers=st.lists(front.REGISTRATIONS, max_size=4),
    max_waiting=st.sampled_from([1, 2, 100]),
    stream=streams(front.command_boxes(), min_boxes=1, malformed_counts=[0, 0, 1, 2]),
    data=st.data(),
)
def test_frontend_same_as_generic(
    workers: List[Any], max_waiting: int, stream: bytes, data: st.DataObject
) -> None:
    """
    Over a store answering later, the front-end listener's protocol and the
    generic one agree on everything observable.
    """
    with later_listeners():
        fast, generic = front.both(front.TYPICAL_WORKERS + workers, max_waiting)
    replay(fast, generic, stream, data, front.EVENTS)
    for side in (fast, generic):
        side.advance(10.0)
    assert_same(fast, generic)
    for side in (fast, generic):
        side.close()
    assert_same(fast, generic)


@COMPARISON_SETTINGS
@given(
    workers=st.lists(sched.REGISTRATIONS, max_size=3),
    lease_grace=st.sampled_from([0.0, 5.0]),
    stream=streams(sched.command_boxes(), min_boxes=3, malformed_counts=[0, 0, 0, 1, 2]),
    data=st.data(),
)
def test_scheduler_same_as_generic(
    workers: List[Any], lease_grace: float, stream: bytes, data: st.DataObject
) -> None:
    """
    Over a store answering later, the scheduler listener's protocol and the
    generic one agree on everything observable.
    """
    with later_listeners():
        fast, generic = sched.both(workers, lease_grace)
    replay(fast, generic, stream, data, sched.EVENTS)
    for seconds in (2.0, None, 2.5, 10.0):
        for side in (fast, generic):
            if seconds is None:
                side.close()
            else:
                side.advance(seconds)
        assert_same(fast, generic)


# -- a store whose answers really come later -----------------------------------


@implementer(IWorkerStore)
class HeldStore(LaterStore):
    """
    L{LaterStore} whose Deferreds fire only on L{release} (after the call
    returned, as a store in another process answers); the methods named in
    C{at_once} answer at once (a store may mix).
    """

    def __init__(self, store: MemoryStore, at_once: Tuple[str, ...] = ()) -> None:
        super().__init__(store)
        self.held: List[Callable[[], Any]] = []
        self.at_once = at_once

    def _later(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if call.__name__ in self.at_once:
            return call(*args, **kwargs)
        held: Deferred[Any] = Deferred()
        inner = super()._later(call, *args, **kwargs)
        self.held.append(lambda: inner.addBoth(chain, held))
        return held

    def release(self) -> None:
        """
        Fire every Deferred held so far, in order.
        """
        held, self.held = self.held, []
        for fire in held:
            fire()


class Front:
    """
    One front-end connection over a L{HeldStore}, on a L{StringTransport}.
    """

    def __init__(self, at_once: Tuple[str, ...] = (), idle_timeout: float = 300.0) -> None:
        self.clock = Clock()
        config = DispatcherConfig(idle_timeout=idle_timeout)
        self.memory = open_memory_store(self.clock, config)
        self.memory.update(WorkerReport("w1", "10.0.0.1", 9000, 10))
        self.store = HeldStore(self.memory, at_once)
        self.hook = HandledCommands()
        listeners = build_listeners(self.store, self.clock, config, hook=self.hook)
        self.transport = StringTransport()
        self.protocol = connect(listeners.frontend.factory, self.transport)

    def tags(self) -> List[bytes]:
        """
        The tags of the answers written so far, in order.
        """
        boxes = amp._ParserHelper.parseString(self.transport.value())
        return [box[amp.ANSWER] for box in boxes]


def chain(result: Any, held: Deferred[Any]) -> None:
    """
    Fire C{held} with C{result}, unless it was cancelled.
    """
    if not held.called:
        if isinstance(result, Failure):
            held.errback(result)
        else:
            held.callback(result)


def connect(factory: Any, transport: StringTransport) -> Any:
    """
    A protocol of C{factory} connected to C{transport}.
    """
    protocol = factory.buildProtocol(None)
    assert protocol is not None
    protocol.makeConnection(transport)
    return protocol


def call(tag: bytes, command: bytes) -> bytes:
    """
    The box of an argument-less call.
    """
    return bytes(amp.AmpBox({amp.ASK: tag, amp.COMMAND: command}).serialize())


def test_answered_when_store_answers() -> None:
    """
    A C{NextWorker} whose store answer comes later is answered then.
    """
    front = Front()
    front.protocol.dataReceived(call(b"1", b"NextWorker"))
    assert front.transport.value() == b""
    front.store.release()
    assert front.tags() == [b"1"]
    assert front.hook.counts() == {(b"NextWorker", "answered"): 1}


def test_closed_while_waiting_told_cancelled() -> None:
    """
    A C{NextWorker} waiting for the store when its connection closes is
    told to the hook as cancelled, and nothing is written.
    """
    front = Front()
    front.protocol.dataReceived(call(b"1", b"NextWorker"))
    front.protocol.connectionLost(Failure(ConnectionDone()))
    front.store.release()
    assert front.transport.value() == b""
    assert front.hook.counts() == {(b"NextWorker", "cancelled"): 1}


def test_waiting_for_store_is_busy() -> None:
    """
    A connection whose C{NextWorker} waits for the store is not idle: the
    idle timeout does not close it under the pending answer.
    """
    front = Front(idle_timeout=5.0)
    front.protocol.dataReceived(call(b"1", b"NextWorker"))
    front.clock.advance(6.0)
    assert not front.transport.disconnecting
    front.store.release()
    front.clock.advance(5.0)
    assert front.transport.disconnecting


def test_mixed_answers_in_call_order() -> None:
    """
    A store answering C{stats} at once and C{take} with a Deferred that has
    fired: the answers of one read leave in call order.
    """
    front = Front(at_once=("stats",))
    later = front.store._later

    def fired(method: Any, *args: Any, **kwargs: Any) -> Any:
        result = later(method, *args, **kwargs)
        front.store.release()
        return result

    front.store._later = fired  # type: ignore[assignment,method-assign]
    front.protocol.dataReceived(call(b"1", b"Stats") + call(b"2", b"NextWorker"))
    assert front.tags() == [b"1", b"2"]


@pytest.mark.parametrize("later", [False, True], ids=["at-once", "later"])
def test_overloaded_logged_either_way(later: bool) -> None:
    """
    A C{NextWorker} refused a place in line is logged once, whether the
    store refuses it at once or in a Deferred.
    """
    memory = RawDispatcher(max_waiting=1, later=later)
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    with capture_logs() as logs, pytest.raises(Overloaded):
        frontend.call(NextWorker, timeout=5.0)
    warnings = [log["event"] for log in logs if log["log_level"] == "warning"]
    assert warnings == ["waiting call refused"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "generic"])
def test_store_failures_answered_and_logged_within_limit(fast_path: bool) -> None:
    """
    While the store fails, calls are answered AMP's unknown error, and one
    peer's calls cost a few log lines, not one each.
    """
    clock = Clock()
    store = LaterStore(open_memory_store(clock))
    store.stats = lambda: fail(RuntimeError("store down"))  # type: ignore[method-assign]
    listeners = build_listeners(store, clock, fast_path=fast_path)
    transport = StringTransport()
    protocol = connect(listeners.frontend.factory, transport)
    with capture_logs() as logs:
        protocol.dataReceived(b"".join(call(b"%d" % i, b"Stats") for i in range(200)))
        clock.advance(0)
    boxes = amp._ParserHelper.parseString(transport.value())
    assert [box[amp.ERROR_CODE] for box in boxes] == [amp.UNKNOWN_ERROR_CODE] * 200
    errors = [log for log in logs if log["event"] == "store call failed"]
    assert 1 <= len(errors) <= 5


@pytest.mark.parametrize("extra", [{}, {b"pool": b"default"}], ids=["shortcut", "parsed"])
def test_box_limit_holds_for_next_worker(extra: Dict[bytes, bytes]) -> None:
    """
    A C{NextWorker} box over C{max_box_bytes} closes the connection, in any
    shape, even whole in one read.
    """
    clock = Clock()
    config = DispatcherConfig(max_box_bytes=4096)
    memory = open_memory_store(clock, config)
    memory.update(WorkerReport("w1", "10.0.0.1", 9000, 10))
    transport = StringTransport()
    protocol = connect(build_listeners(memory, clock, config).frontend.factory, transport)
    big = amp.AmpBox({amp.ASK: b"t" * 10_000, amp.COMMAND: b"NextWorker", **extra})
    protocol.dataReceived(bytes(big.serialize()))
    assert transport.disconnecting
    assert memory.stats().dispatched == 0


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "generic"])
def test_store_unavailable_declared(fast_path: bool) -> None:
    """
    A store that cannot answer: each call gets the declared
    C{STORE_UNAVAILABLE} with the store's reason, the connection stays, the
    hook is told, and nothing is logged per call (the store logs its state).
    """
    clock = Clock()
    store = LaterStore(open_memory_store(clock))
    down = StoreUnavailable("the store did not answer within 1.0 s")
    store.stats = lambda: fail(down)  # type: ignore[method-assign]
    store.take = lambda pool: fail(down)  # type: ignore[method-assign]
    store.next_worker = lambda *arguments, **options: fail(down)  # type: ignore[method-assign]
    store.update = lambda report, owner=None: fail(down)  # type: ignore[method-assign]
    hook = HandledCommands()
    served = build_listeners(store, clock, hook=hook, fast_path=fast_path)
    frontend, scheduler = StringTransport(), StringTransport()
    front = connect(served.frontend.factory, frontend)
    sched = connect(served.scheduler.factory, scheduler)
    update = amp.AmpBox(
        {
            amp.ASK: b"3",
            amp.COMMAND: b"WorkerUpdate",
            b"worker_id": b"w1",
            b"host": b"h",
            b"port": b"1",
            b"capacity": b"1",
        }
    )
    with capture_logs() as logs:
        front.dataReceived(call(b"1", b"Stats") + call(b"2", b"NextWorker"))
        sched.dataReceived(bytes(update.serialize()))
    boxes = amp._ParserHelper.parseString(frontend.value() + scheduler.value())
    assert [(box[amp.ERROR], box[amp.ERROR_CODE]) for box in boxes] == [
        (b"1", STORE_UNAVAILABLE),
        (b"2", STORE_UNAVAILABLE),
        (b"3", STORE_UNAVAILABLE),
    ]
    assert {box[amp.ERROR_DESCRIPTION] for box in boxes} == {str(down).encode()}
    assert not (frontend.disconnecting or scheduler.disconnecting)
    assert hook.counts() == {
        (b"Stats", "store unavailable"): 1,
        (b"NextWorker", "store unavailable"): 1,
        (b"WorkerUpdate", "store unavailable"): 1,
    }
    assert [log for log in logs if log["log_level"] in ("warning", "error")] == []
