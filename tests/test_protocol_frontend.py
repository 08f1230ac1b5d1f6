"""
The front-end listener over in-memory connections: C{NextWorker} and C{Stats},
their errors, and the scheduler's commands refused there.

Every test runs against both front ends: the C{NextWorker} fast path
(L{FrontendProtocol}) and Twisted's generic AMP box protocol.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple, Type, cast

import pytest
from amp_dispatch_commands import (
    ListWorkers,
    NextWorker,
    NoWorkerAvailable,
    Overloaded,
    Stats,
    WorkerGone,
    WorkerUpdate,
)
from structlog.testing import capture_logs
from twisted.protocols import amp

from amp_dispatch.protocol._roles import FrontendProtocol
from tests._memory import (
    Connection,
    Invalid,
    InvalidArgumentChecks,
    RawDispatcher,
    invalid,
    lax,
    update,
)


@pytest.fixture
def memory(fast_path: bool, later: bool) -> RawDispatcher:
    return RawDispatcher(fast_path=fast_path, later=later)


@pytest.fixture
def scheduler(memory: RawDispatcher) -> Connection:
    return memory.scheduler()


@pytest.fixture
def frontend(memory: RawDispatcher) -> Connection:
    return memory.frontend()


def test_front_end_served(memory: RawDispatcher, fast_path: bool) -> None:
    """
    The front-end connections are served by the front end the test asked for.
    """
    served = memory.frontend().server
    assert isinstance(served, FrontendProtocol) is fast_path
    assert isinstance(served, amp.BinaryBoxProtocol) is not fast_path


# -- NextWorker answers -------------------------------------------------------


def test_next_worker_answer(scheduler: Connection, frontend: Connection) -> None:
    """
    C{NextWorker} answers a registered worker's id, host and port.
    """
    update(scheduler, "w1", host="192.0.2.7", port=7000)
    assert frontend.call(NextWorker) == {"worker_id": "w1", "host": "192.0.2.7", "port": 7000}


def test_next_worker_takes_slot(
    memory: RawDispatcher, scheduler: Connection, frontend: Connection
) -> None:
    """
    Each answer takes one of the worker's free slots.
    """
    update(scheduler, "w1", capacity=3)
    frontend.call(NextWorker)
    assert memory.worker("w1")["free"] == 2


def test_next_worker_most_free(scheduler: Connection, frontend: Connection) -> None:
    """
    The worker with the most free slots is answered first.
    """
    update(scheduler, "small", capacity=1)
    update(scheduler, "big", capacity=3)
    assert frontend.call(NextWorker)["worker_id"] == "big"


def test_next_worker_pool(scheduler: Connection, frontend: Connection) -> None:
    """
    C{pool} picks the pool the worker is answered from.
    """
    update(scheduler, "w-default", capacity=5)
    update(scheduler, "w-gpu", capacity=1, pool="gpu")
    assert frontend.call(NextWorker, pool="gpu")["worker_id"] == "w-gpu"


def test_next_worker_default_pool(scheduler: Connection, frontend: Connection) -> None:
    """
    Without C{pool}, only the pool C{"default"} answers.
    """
    update(scheduler, "w-gpu", capacity=5, pool="gpu")
    update(scheduler, "w-default", capacity=1, pool="default")
    assert frontend.call(NextWorker)["worker_id"] == "w-default"


def test_no_worker_available_at_once(frontend: Connection) -> None:
    """
    With no free slot and no C{timeout}, C{NO_WORKER_AVAILABLE} answers at once.
    """
    with pytest.raises(NoWorkerAvailable):
        frontend.call(NextWorker)


def test_no_worker_available_zero_timeout(scheduler: Connection, frontend: Connection) -> None:
    """
    A C{timeout} of 0 also answers C{NO_WORKER_AVAILABLE} at once.
    """
    update(scheduler, "full", capacity=0)
    with pytest.raises(NoWorkerAvailable):
        frontend.call(NextWorker, timeout=0.0)


def test_no_worker_available_when_full(scheduler: Connection, frontend: Connection) -> None:
    """
    A worker whose slots are all taken is not answered.
    """
    update(scheduler, "w1", capacity=1)
    frontend.call(NextWorker)
    with pytest.raises(NoWorkerAvailable):
        frontend.call(NextWorker)


def test_no_worker_available_other_pool(scheduler: Connection, frontend: Connection) -> None:
    """
    Free slots of another pool do not answer.
    """
    update(scheduler, "w-gpu", capacity=1, pool="gpu")
    with pytest.raises(NoWorkerAvailable):
        frontend.call(NextWorker, pool="cpu")


def test_waiting_call_waits(memory: RawDispatcher, frontend: Connection) -> None:
    """
    With a C{timeout}, a call with no free slot waits, counted in C{Stats}.
    """
    outcome = frontend.send(NextWorker, timeout=5.0)
    memory.clock.advance(4.9)
    frontend.flush()
    assert not outcome.done
    assert memory.stats()["waiting"] == 1


def test_waiting_call_answered_by_update(
    memory: RawDispatcher, scheduler: Connection, frontend: Connection
) -> None:
    """
    A waiting call is answered as soon as an update on the scheduler
    connection frees a slot.
    """
    outcome = frontend.send(NextWorker, timeout=5.0)
    update(scheduler, "w1", port=7001)
    frontend.flush()
    assert outcome.result() == {"worker_id": "w1", "host": "10.0.0.1", "port": 7001}


def test_waiting_call_answer_takes_slot(
    memory: RawDispatcher, scheduler: Connection, frontend: Connection
) -> None:
    """
    The answer to a waiting call takes the slot and ends its wait.
    """
    frontend.send(NextWorker, timeout=5.0)
    update(scheduler, "w1", capacity=1)
    frontend.flush()
    stats = memory.stats()
    assert (stats["waiting"], stats["free_slots"], stats["dispatched"]) == (0, 0, 1)


def test_waiting_calls_first_come_first_served(
    memory: RawDispatcher, scheduler: Connection
) -> None:
    """
    Waiting calls of a pool are answered in the order they came.
    """
    first, second = memory.frontend(), memory.frontend()
    early = first.send(NextWorker, timeout=5.0)
    late = second.send(NextWorker, timeout=5.0)
    update(scheduler, "w1", capacity=1)
    first.flush()
    second.flush()
    assert (early.done, late.done) == (True, False)


def test_waiting_call_times_out(memory: RawDispatcher, frontend: Connection) -> None:
    """
    A waiting call is answered C{NO_WORKER_AVAILABLE} when its timeout runs out.
    """
    outcome = frontend.send(NextWorker, timeout=5.0)
    memory.clock.advance(5.0)
    frontend.flush()
    with pytest.raises(NoWorkerAvailable):
        outcome.result()


def test_waiting_call_timed_out_leaves_line(memory: RawDispatcher, frontend: Connection) -> None:
    """
    A call whose timeout ran out no longer counts as waiting.
    """
    frontend.send(NextWorker, timeout=5.0)
    memory.clock.advance(5.0)
    frontend.flush()
    assert memory.stats()["waiting"] == 0


def test_overloaded(fast_path: bool) -> None:
    """
    One more waiting call than C{max_waiting} is answered C{OVERLOADED}.
    """
    memory = RawDispatcher(max_waiting=2, fast_path=fast_path)
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    frontend.send(NextWorker, timeout=5.0)
    with pytest.raises(Overloaded):
        frontend.call(NextWorker, timeout=5.0)


def test_overloaded_keeps_waiters(fast_path: bool) -> None:
    """
    An C{OVERLOADED} answer leaves the calls already waiting in line.
    """
    memory = RawDispatcher(max_waiting=1, fast_path=fast_path)
    frontend = memory.frontend()
    frontend.send(NextWorker, timeout=5.0)
    frontend.send(NextWorker, timeout=5.0)
    assert memory.stats()["waiting"] == 1


def test_closed_waiting_call_leaves_line(memory: RawDispatcher) -> None:
    """
    A waiting call whose connection closes stops counting as waiting.
    """
    leaving = memory.frontend()
    leaving.send(NextWorker, timeout=5.0)
    leaving.close()
    assert memory.stats()["waiting"] == 0


def test_closed_waiting_call_takes_no_slot(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A waiting call whose connection closed takes no slot: a later update's
    slot goes to the next C{NextWorker}.
    """
    leaving = memory.frontend()
    leaving.send(NextWorker, timeout=5.0)
    leaving.close()
    update(scheduler, "w1", capacity=1)
    assert memory.frontend().call(NextWorker)["worker_id"] == "w1"


def test_closed_waiting_call_not_dispatched(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A waiting call whose connection closed is not counted as dispatched.
    """
    leaving = memory.frontend()
    leaving.send(NextWorker, timeout=5.0)
    leaving.close()
    update(scheduler, "w1", capacity=1)
    stats = memory.stats()
    assert (stats["free_slots"], stats["dispatched"]) == (1, 0)


# -- Stats --------------------------------------------------------------------


def test_stats_fresh(frontend: Connection) -> None:
    """
    A fresh dispatcher's C{Stats}: all counters 0, protocol 1.
    """
    assert frontend.call(Stats) == {
        "workers": 0,
        "free_slots": 0,
        "waiting": 0,
        "dispatched": 0,
        "protocol": 1,
    }


def test_stats_counts(scheduler: Connection, frontend: Connection) -> None:
    """
    C{Stats} counts workers, their free slots, waiting calls and answers.
    """
    update(scheduler, "a", capacity=2)
    update(scheduler, "b", capacity=3)
    frontend.call(NextWorker)
    frontend.send(NextWorker, pool="empty", timeout=5.0)
    assert frontend.call(Stats) == {
        "workers": 2,
        "free_slots": 4,
        "waiting": 1,
        "dispatched": 1,
        "protocol": 1,
    }


def test_stats_dispatched_counts_answers(scheduler: Connection, frontend: Connection) -> None:
    """
    C{dispatched} counts C{NextWorker} answers only, not its errors.
    """
    update(scheduler, "a", capacity=2)
    for _ in range(3):
        frontend.send(NextWorker)
    assert frontend.call(Stats)["dispatched"] == 2


def test_stats_dispatched_survives_update(scheduler: Connection, frontend: Connection) -> None:
    """
    C{dispatched} counts answers since start, whatever updates came since.
    """
    update(scheduler, "a", capacity=1)
    frontend.call(NextWorker)
    update(scheduler, "a", capacity=1)
    frontend.call(NextWorker)
    assert frontend.call(Stats)["dispatched"] == 2


# -- the scheduler's commands are not served here -----------------------------

SCHEDULER_CALLS: List[Tuple[Type[amp.Command], Dict[str, Any]]] = [
    (WorkerUpdate, {"worker_id": "w2", "host": "10.0.0.2", "port": 9000, "capacity": 4}),
    (WorkerUpdate, {"worker_id": "w1", "host": "10.0.0.2", "port": 9000, "capacity": 4}),
    (WorkerGone, {"worker_id": "w1"}),
    (ListWorkers, {}),
]
SCHEDULER_CALL_IDS = ["WorkerUpdate-new", "WorkerUpdate-existing", "WorkerGone", "ListWorkers"]


@pytest.fixture
def registered(memory: RawDispatcher, scheduler: Connection) -> RawDispatcher:
    update(scheduler, "w1", capacity=2)
    return memory


@pytest.mark.parametrize(("command", "arguments"), SCHEDULER_CALLS, ids=SCHEDULER_CALL_IDS)
def test_scheduler_command_unhandled(
    registered: RawDispatcher, command: Type[amp.Command], arguments: Dict[str, Any]
) -> None:
    """
    A scheduler command on the front-end listener gets AMP's unhandled-command
    error.
    """
    with pytest.raises(amp.UnhandledCommand):
        registered.frontend().call(command, **arguments)


@pytest.mark.parametrize(("command", "arguments"), SCHEDULER_CALLS, ids=SCHEDULER_CALL_IDS)
def test_scheduler_command_changes_nothing(
    registered: RawDispatcher, command: Type[amp.Command], arguments: Dict[str, Any]
) -> None:
    """
    A scheduler command on the front-end listener changes nothing.
    """
    before = registered.snapshot()
    registered.frontend().send(command, **arguments)
    assert registered.snapshot() == before


@pytest.mark.parametrize(("command", "arguments"), SCHEDULER_CALLS, ids=SCHEDULER_CALL_IDS)
def test_scheduler_command_keeps_connection(
    registered: RawDispatcher, command: Type[amp.Command], arguments: Dict[str, Any]
) -> None:
    """
    After a scheduler command, the front-end connection answers the next call.
    """
    frontend = registered.frontend()
    frontend.send(command, **arguments)
    assert frontend.call(NextWorker)["worker_id"] == "w1"


def test_scheduler_command_logged(registered: RawDispatcher) -> None:
    """
    A scheduler command on the front-end listener is logged once, at warning,
    with the reason.
    """
    frontend = registered.frontend()
    with capture_logs() as logs:
        frontend.send(WorkerGone, worker_id="w1")
    assert [
        (log["event"], log["command"], log["reason"])
        for log in logs
        if log["log_level"] == "warning"
    ] == [("input rejected", "WorkerGone", "command not served on this listener")]


def test_unanswered_scheduler_command_keeps_connection(registered: RawDispatcher) -> None:
    """
    A scheduler command that asks for no answer does not drop the front-end
    connection either.
    """
    frontend = registered.frontend()
    frontend.tell(lax(WorkerGone, answer=False), worker_id=b"w1")
    assert frontend.open


# -- INVALID_ARGUMENT ---------------------------------------------------------


def _nextWorker(field: str, value: bytes) -> Invalid:
    return invalid("frontend", NextWorker, {}, field, value)


INVALID_NEXT_WORKER = [
    _nextWorker("pool", b""),
    _nextWorker("pool", "\u00e9".encode() * 128),
    _nextWorker("pool", b"gpu\x00"),
    _nextWorker("pool", b"gpu\n"),
    _nextWorker("pool", b"gpu\x7f"),
    _nextWorker("pool", b"\xff\xfe"),
    _nextWorker("timeout", b"abc"),
    _nextWorker("timeout", b"-1.0"),
    _nextWorker("timeout", b"nan"),
    _nextWorker("timeout", b"inf"),
    _nextWorker("timeout", b"-inf"),
]


class TestInvalidArgument(InvalidArgumentChecks):
    """
    C{NextWorker} arguments answered with C{INVALID_ARGUMENT}, on both front
    ends.
    """

    @pytest.fixture(params=INVALID_NEXT_WORKER, ids=[case.id for case in INVALID_NEXT_WORKER])
    def case(self, request: pytest.FixtureRequest) -> Invalid:
        return cast(Invalid, request.param)
