"""
The per-command hook (L{amp_dispatch.protocol._hooks}): both listeners tell
it of every command they handle, with its outcome and connection, on the
listeners' own protocols (fast paths included), on the generic protocol, and
with a store answering at once or later.
"""

from __future__ import annotations

from typing import Dict, Tuple

import pytest
from amp_dispatch_commands import (
    InvalidArgument,
    ListWorkers,
    NextWorker,
    NoWorkerAvailable,
    Overloaded,
    Stats,
    WorkerGone,
)
from twisted.protocols import amp

from amp_dispatch.protocol._hooks import INVALID_ARGUMENT, NOT_SERVED, ConnectionInfo
from tests._memory import Connection, RawDispatcher, lax, update


@pytest.fixture
def memory(fast_path: bool, later: bool) -> RawDispatcher:
    return RawDispatcher(max_waiting=1, fast_path=fast_path, later=later)


def told(memory: RawDispatcher) -> Dict[Tuple[bytes, str], int]:
    """
    What the hook was told since the last call, by command and outcome.
    """
    counts = memory.handled.counts()
    memory.handled.calls.clear()
    return counts


def test_next_worker_answered(memory: RawDispatcher) -> None:
    """
    Each answered C{NextWorker} is told once, however many a read holds.
    """
    update(memory.scheduler(), "w1", capacity=5)
    frontend = memory.frontend()
    told(memory)
    outcomes = [frontend.send(NextWorker) for _ in range(3)]
    frontend.flush()
    assert [outcome.result()["worker_id"] for outcome in outcomes] == ["w1"] * 3
    assert told(memory) == {(b"NextWorker", "answered"): 3}


def test_next_worker_no_worker(memory: RawDispatcher) -> None:
    """
    A C{NextWorker} answered C{NO_WORKER_AVAILABLE} at once is told so.
    """
    with pytest.raises(NoWorkerAvailable):
        memory.frontend().call(NextWorker)
    assert told(memory) == {(b"NextWorker", "no worker"): 1}


def test_next_worker_waited(memory: RawDispatcher) -> None:
    """
    A waiting C{NextWorker} is told when it is answered, not before.
    """
    frontend = memory.frontend()
    waiting = frontend.send(NextWorker, timeout=5.0)
    assert told(memory) == {}
    update(memory.scheduler(), "w1")
    frontend.flush()
    assert waiting.result()["worker_id"] == "w1"
    assert told(memory) == {(b"WorkerUpdate", "accepted"): 1, (b"NextWorker", "answered"): 1}


def test_next_worker_timed_out(memory: RawDispatcher) -> None:
    """
    A waiting C{NextWorker} whose timeout runs out is told C{timed out}.
    """
    frontend = memory.frontend()
    waiting = frontend.send(NextWorker, timeout=5.0)
    memory.clock.advance(5.0)
    frontend.flush()
    with pytest.raises(NoWorkerAvailable):
        waiting.result()
    assert told(memory) == {(b"NextWorker", "timed out"): 1}


def test_next_worker_overloaded(memory: RawDispatcher) -> None:
    """
    A C{NextWorker} refused a place in line is told C{overloaded}.
    """
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    with pytest.raises(Overloaded):
        frontend.call(NextWorker, timeout=5.0)
    assert told(memory) == {(b"NextWorker", "overloaded"): 1}


def test_next_worker_cancelled(memory: RawDispatcher) -> None:
    """
    A waiting C{NextWorker} whose connection closes is told C{cancelled}.
    """
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    frontend.close()
    assert told(memory) == {(b"NextWorker", "cancelled"): 1}


def test_invalid(memory: RawDispatcher) -> None:
    """
    A call refused for its arguments is told C{invalid}, on either listener.
    """
    with pytest.raises(InvalidArgument):
        memory.frontend().call(lax(NextWorker), timeout=b"soon")
    with pytest.raises(InvalidArgument):
        memory.scheduler().call(lax(WorkerGone))
    assert told(memory) == {(b"NextWorker", "invalid"): 1, (b"WorkerGone", "invalid"): 1}


def test_update_outcomes(memory: RawDispatcher) -> None:
    """
    Updates are told C{accepted}, C{duplicate} or C{stale}.
    """
    scheduler = memory.scheduler()
    update(scheduler, "w1", seq=2)
    update(scheduler, "w1", seq=2)
    update(scheduler, "w1", seq=1)
    assert told(memory) == {
        (b"WorkerUpdate", "accepted"): 1,
        (b"WorkerUpdate", "duplicate"): 1,
        (b"WorkerUpdate", "stale"): 1,
    }


def test_gone_list_stats(memory: RawDispatcher) -> None:
    """
    C{WorkerGone} is told C{known} or C{unknown}; C{ListWorkers} and
    C{Stats} (on both listeners) C{answered}.
    """
    scheduler = memory.scheduler()
    update(scheduler, "w1")
    told(memory)
    scheduler.call(WorkerGone, worker_id="w1")
    scheduler.call(WorkerGone, worker_id="w1")
    scheduler.call(ListWorkers)
    scheduler.call(Stats)
    memory.frontend().call(Stats)
    assert told(memory) == {
        (b"WorkerGone", "known"): 1,
        (b"WorkerGone", "unknown"): 1,
        (b"ListWorkers", "answered"): 1,
        (b"Stats", "answered"): 2,
    }


def test_connection_told(memory: RawDispatcher) -> None:
    """
    The hook is told which connection: its role, a number of its own, and
    the peer.
    """
    first, second = memory.frontend(), memory.frontend()
    first.call(Stats)
    second.call(Stats)
    scheduler: Connection = memory.scheduler()
    scheduler.call(Stats)
    connections = [call[2] for call in memory.handled.calls]
    assert all(isinstance(connection, ConnectionInfo) for connection in connections)
    assert [connection.role for connection in connections] == [
        "frontend",
        "frontend",
        "scheduler",
    ]
    assert len({connection.number for connection in connections}) == 3
    assert all(connection.peer != "?" for connection in connections)


def test_rejected_invalid(memory: RawDispatcher) -> None:
    """
    A call refused for its arguments is told as a rejected input of its
    listener, of kind C{invalid argument}.
    """
    with pytest.raises(InvalidArgument):
        memory.frontend().call(lax(NextWorker), timeout=b"soon")
    assert memory.handled.rejections == [("frontend", INVALID_ARGUMENT)]


def test_rejected_not_served(memory: RawDispatcher) -> None:
    """
    A command the listener does not serve is told as C{command not served}.
    """
    with pytest.raises(amp.UnhandledCommand):
        memory.frontend().call(WorkerGone, worker_id="w1")
    assert memory.handled.rejections == [("frontend", NOT_SERVED)]


def test_waited_answered(memory: RawDispatcher) -> None:
    """
    A call that waited is told with how long it waited.
    """
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    memory.clock.advance(1.5)
    update(memory.scheduler(), "w1")
    frontend.flush()
    assert memory.handled.waits == [1.5]


def test_waited_timed_out(memory: RawDispatcher) -> None:
    """
    A call that waited until its timeout is told with its wait.
    """
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    memory.clock.advance(5.0)
    frontend.flush()
    assert memory.handled.waits == [5.0]


def test_not_waited(memory: RawDispatcher) -> None:
    """
    Calls answered at once, and calls whose connection closed while they
    waited, are not told as waits.
    """
    update(memory.scheduler(), "w1")
    frontend = memory.frontend()
    frontend.call(NextWorker, timeout=5.0)
    frontend.send(NextWorker, timeout=5.0)
    frontend.close()
    assert memory.handled.waits == []
