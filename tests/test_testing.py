"""
L{amp_dispatch.testing.MemoryDispatcher}: a real dispatcher and real clients
in memory, moved by L{MemoryDispatcher.flush} and its clock; and the README's
example of it, run as it is written there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from amp_dispatch_commands import NoWorkerAvailable, Overloaded
from twisted.internet.defer import Deferred

from amp_dispatch.client import (
    DispatcherStats,
    DispatcherUnavailable,
    Worker,
)
from amp_dispatch.client._calls import ClientProtocol
from amp_dispatch.protocol._receivers import FrontendReceiver, SchedulerReceiver
from amp_dispatch.server._config import DEFAULT_CONFIG, DispatcherConfig
from amp_dispatch.testing import MemoryDispatcher
from tests._deferreds import assert_no_result, failure_of, fired, result_of

README = Path(__file__).parent.parent / "README.md"


def never_retry(attempt: int) -> float:
    """
    A retry policy that does not reconnect within any test.
    """
    return 3_600.0


def with_worker(**config: Any) -> MemoryDispatcher:
    """
    A dispatcher with C{config}, and worker C{w1} (2 free slots) registered
    by a scheduler client.
    """
    dispatcher = MemoryDispatcher(DispatcherConfig(**config))
    dispatcher.scheduler_client().update("w1", "10.0.0.1", 9000, capacity=2)
    dispatcher.flush()
    return dispatcher


def count_calls(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> List[object]:
    """
    Record every call of method C{name} of C{cls} from now on (it still
    runs); the list of their first arguments.
    """
    original: Callable[..., Any] = getattr(cls, name)
    calls: List[object] = []

    def counted(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


# -- calls and flush -----------------------------------------------------------


def test_update_answered_at_flush() -> None:
    """
    A scheduler client's update fires with C{True} once the dispatcher is
    flushed.
    """
    dispatcher = MemoryDispatcher()
    accepted = dispatcher.scheduler_client().update("w1", "10.0.0.1", 9000, capacity=2)
    dispatcher.flush()
    assert result_of(accepted) is True


def test_nothing_moves_before_flush() -> None:
    """
    A call is not answered until the dispatcher is flushed.
    """
    dispatcher = MemoryDispatcher()
    accepted = dispatcher.scheduler_client().update("w1", "10.0.0.1", 9000, capacity=2)
    assert_no_result(accepted)


def test_next_worker_answers_registered_worker() -> None:
    """
    A front-end client gets the worker a scheduler client registered.
    """
    dispatcher = with_worker()
    worker = dispatcher.frontend_client().next_worker()
    dispatcher.flush()
    assert result_of(worker) == Worker("w1", "10.0.0.1", 9000)


def test_clients_started() -> None:
    """
    The clients come started: the first call of a new client is answered at
    the first flush, without advancing the clock.
    """
    dispatcher = MemoryDispatcher()
    stats = dispatcher.frontend_client().stats()
    dispatcher.flush()
    assert result_of(stats).protocol == 1


def test_flush_runs_work_due_now() -> None:
    """
    L{MemoryDispatcher.flush} runs what is due now on the clock.
    """
    dispatcher = MemoryDispatcher()
    ran: List[bool] = []
    dispatcher.clock.callLater(0, ran.append, True)
    dispatcher.flush()
    assert ran == [True]


def test_flush_leaves_later_work() -> None:
    """
    L{MemoryDispatcher.flush} does not move the clock: work due later waits.
    """
    dispatcher = MemoryDispatcher()
    ran: List[bool] = []
    dispatcher.clock.callLater(0.001, ran.append, True)
    dispatcher.flush()
    assert (ran, dispatcher.clock.seconds()) == ([], 0.0)


# -- the real protocols, fast paths included -----------------------------------


def test_next_worker_on_frontend_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A C{NextWorker} that finds a free slot is answered on the front-end
    listener's fast path: its receiver (the generic path) sees no box.
    """
    dispatcher = with_worker()
    frontend = dispatcher.frontend_client()
    received = count_calls(monkeypatch, FrontendReceiver, "ampBoxReceived")
    worker = frontend.next_worker()
    dispatcher.flush()
    assert (result_of(worker).worker_id, received) == ("w1", [])


def test_waiting_next_worker_on_frontend_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A C{NextWorker} that must wait goes to the front-end receiver (so the
    fast-path test above can see the receiver used).
    """
    dispatcher = MemoryDispatcher()
    frontend = dispatcher.frontend_client()
    received = count_calls(monkeypatch, FrontendReceiver, "ampBoxReceived")
    frontend.next_worker(timeout=1.0).addErrback(lambda _: None)
    dispatcher.flush()
    assert len(received) == 1


def test_update_on_scheduler_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A C{WorkerUpdate} is answered on the scheduler listener's fast path.
    """
    dispatcher = MemoryDispatcher()
    scheduler = dispatcher.scheduler_client()
    received = count_calls(monkeypatch, SchedulerReceiver, "ampBoxReceived")
    accepted = scheduler.update("w1", "10.0.0.1", 9000, capacity=2)
    dispatcher.flush()
    assert (result_of(accepted), received) == (True, [])


def test_next_worker_on_client_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The front-end client makes C{next_worker} a fast call.
    """
    dispatcher = with_worker()
    frontend = dispatcher.frontend_client()
    fast_calls = count_calls(monkeypatch, ClientProtocol, "fast_call")
    worker = frontend.next_worker()
    dispatcher.flush()
    assert result_of(worker).worker_id == "w1"
    assert len(fast_calls) == 1


# -- time ----------------------------------------------------------------------


def test_next_worker_wait_runs_out_by_clock() -> None:
    """
    A C{NextWorker} waiting for a slot fails with L{NoWorkerAvailable} when
    the clock reaches its timeout.
    """
    dispatcher = MemoryDispatcher()
    worker = dispatcher.frontend_client().next_worker(timeout=5.0)
    dispatcher.flush()
    dispatcher.clock.advance(4.9)
    dispatcher.flush()
    assert not fired(worker)
    dispatcher.clock.advance(0.1)
    dispatcher.flush()
    failure_of(worker, NoWorkerAvailable)


def test_call_timeout_by_clock() -> None:
    """
    A client's own call timeout (passed through, as every option) runs on
    the dispatcher's clock; its errors name the memory endpoint.
    """
    dispatcher = MemoryDispatcher()
    frontend = dispatcher.frontend_client(call_timeout=2.0, retry_policy=never_retry)
    dispatcher.drop_connections()
    stats = frontend.stats()
    dispatcher.clock.advance(2.0)
    assert str(failure_of(stats, DispatcherUnavailable).value) == (
        "no connection to memory:frontend within 2.0 s"
        " (last error: Connection was closed cleanly: Connection done.)"
    )


def test_ttl_by_clock() -> None:
    """
    A worker updated with a ttl is removed when the clock reaches it.
    """
    dispatcher = MemoryDispatcher()
    dispatcher.scheduler_client().update("w1", "h", 1, capacity=1, ttl=10.0)
    dispatcher.flush()
    dispatcher.clock.advance(9.9)
    assert dispatcher.stats().workers == 1
    dispatcher.clock.advance(0.1)
    assert dispatcher.stats().workers == 0


def test_lease_by_clock() -> None:
    """
    A worker outlives its scheduler client's connection by the configured
    lease grace, by the clock.
    """
    dispatcher = MemoryDispatcher(DispatcherConfig(lease_grace=5.0))
    scheduler = dispatcher.scheduler_client()
    scheduler.update("w1", "h", 1, capacity=1)
    dispatcher.flush()
    scheduler.stop()
    dispatcher.flush()
    dispatcher.clock.advance(4.9)
    assert dispatcher.stats().workers == 1
    dispatcher.clock.advance(0.1)
    assert dispatcher.stats().workers == 0


# -- configuration -------------------------------------------------------------


def test_default_config() -> None:
    """
    Without a config, the dispatcher runs with the server's defaults.
    """
    assert MemoryDispatcher().config == DEFAULT_CONFIG


def test_config_limits_honoured() -> None:
    """
    The config's limits hold: with C{max_waiting=0} a call that would wait
    fails with L{Overloaded}.
    """
    dispatcher = MemoryDispatcher(DispatcherConfig(max_waiting=0))
    worker = dispatcher.frontend_client().next_worker(timeout=1.0)
    dispatcher.flush()
    failure_of(worker, Overloaded)


def test_config_listener_caps_honoured() -> None:
    """
    The listeners' caps hold: over C{max_frontend_connections}, a client's
    connection is closed at once and its call goes unanswered.
    """
    dispatcher = with_worker(max_frontend_connections=1)
    dispatcher.frontend_client()
    refused = dispatcher.frontend_client(retry_policy=never_retry)
    worker = refused.next_worker()
    dispatcher.flush()
    failure_of(worker, DispatcherUnavailable)


# -- several clients -----------------------------------------------------------


def test_two_clients_of_each_kind() -> None:
    """
    Two scheduler clients and two front-end clients share one dispatcher:
    each front end gets one of the workers the schedulers registered.
    """
    dispatcher = MemoryDispatcher()
    dispatcher.scheduler_client().update("a", "10.0.0.1", 9000, capacity=1)
    dispatcher.scheduler_client().update("b", "10.0.0.2", 9000, capacity=1)
    dispatcher.flush()
    first = dispatcher.frontend_client().next_worker()
    second = dispatcher.frontend_client().next_worker()
    dispatcher.flush()
    assert {result_of(first).worker_id, result_of(second).worker_id} == {"a", "b"}


# -- extras --------------------------------------------------------------------


def test_stats_without_client() -> None:
    """
    L{MemoryDispatcher.stats} gives the dispatcher's counters as a C{Stats}
    call would.
    """
    dispatcher = with_worker()
    dispatcher.frontend_client().next_worker()
    dispatcher.flush()
    assert dispatcher.stats() == DispatcherStats(
        workers=1, free_slots=1, waiting=0, dispatched=1, protocol=1
    )


def test_client_stop_closes_its_connection() -> None:
    """
    A client's C{stop} closes its connection: the dispatcher sees it gone
    (with no lease grace, its workers go at once).
    """
    dispatcher = MemoryDispatcher(DispatcherConfig(lease_grace=0.0))
    scheduler = dispatcher.scheduler_client()
    scheduler.update("w1", "h", 1, capacity=1)
    dispatcher.flush()
    stopped = scheduler.stop()
    dispatcher.flush()
    assert (result_of(stopped), dispatcher.stats().workers) == (None, 0)


def test_drop_connections_fails_calls_waiting() -> None:
    """
    L{MemoryDispatcher.drop_connections} closes every connection: a call
    waiting for its answer fails with L{DispatcherUnavailable}.
    """
    dispatcher = MemoryDispatcher()
    worker = dispatcher.frontend_client().next_worker(timeout=30.0)
    dispatcher.flush()
    dispatcher.drop_connections()
    failure_of(worker, DispatcherUnavailable)


def test_drop_connections_keeps_workers() -> None:
    """
    After L{MemoryDispatcher.drop_connections} the dispatcher keeps its
    workers (for their lease grace).
    """
    dispatcher = with_worker()
    dispatcher.drop_connections()
    assert dispatcher.stats().workers == 1


def test_clients_reconnect_after_their_retry_delay() -> None:
    """
    After the connections dropped, a client reconnects when the clock
    reaches its retry delay, and its calls are answered again.
    """
    dispatcher = with_worker()
    frontend = dispatcher.frontend_client(retry_policy=lambda attempt: 1.0)
    dispatcher.drop_connections()
    worker = frontend.next_worker()
    dispatcher.clock.advance(1.0)
    dispatcher.flush()
    assert result_of(worker).worker_id == "w1"


def test_restart_comes_back_empty() -> None:
    """
    After L{MemoryDispatcher.restart} the dispatcher has no workers.
    """
    dispatcher = with_worker()
    dispatcher.restart()
    assert dispatcher.stats().workers == 0


def test_restart_answers_waiting_calls() -> None:
    """
    A restart answers the calls waiting for a free slot with
    L{NoWorkerAvailable}, as a dispatcher shutting down does.
    """
    dispatcher = MemoryDispatcher()
    worker = dispatcher.frontend_client().next_worker(timeout=30.0)
    dispatcher.flush()
    dispatcher.restart()
    assert "shutting down" in str(failure_of(worker, NoWorkerAvailable).value)


def test_restart_refilled_by_scheduler_client() -> None:
    """
    After a restart, the scheduler client registers its workers again once
    it reconnects.
    """
    dispatcher = MemoryDispatcher()
    dispatcher.scheduler_client(retry_policy=lambda attempt: 1.0).update("w1", "h", 1, 2)
    dispatcher.flush()
    dispatcher.restart()
    dispatcher.clock.advance(1.0)
    dispatcher.flush()
    assert dispatcher.stats().workers == 1


def test_stop_stops_clients() -> None:
    """
    L{MemoryDispatcher.stop} stops the clients made with it: their calls
    fail with L{DispatcherUnavailable}.
    """
    dispatcher = MemoryDispatcher()
    frontend = dispatcher.frontend_client()
    dispatcher.stop()
    stats = frontend.stats()
    dispatcher.flush()
    failure_of(stats, DispatcherUnavailable)


def test_stop_leaves_nothing_on_the_clock() -> None:
    """
    After L{MemoryDispatcher.stop} nothing is left to run on the clock: no
    keep-alive, reconnect or expiry.
    """
    dispatcher = with_worker()
    dispatcher.scheduler_client().update("w2", "h", 1, capacity=1, ttl=60.0)
    dispatcher.frontend_client().next_worker()
    dispatcher.flush()
    dispatcher.stop()
    assert dispatcher.clock.getDelayedCalls() == []


# -- the README's example ------------------------------------------------------


def readme_example() -> str:
    """
    The Python example of the README's section on testing with
    L{MemoryDispatcher}.
    """
    section = README.read_text().split("## Testing your front end or scheduler", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_readme_example_runs() -> None:
    """
    The README's example tests pass as they are written there.
    """
    namespace: Dict[str, Any] = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()


def test_awaiting_code_runs_at_flush() -> None:
    """
    Code that awaits a client's calls runs when the dispatcher is flushed
    (a coroutine run with C{Deferred.fromCoroutine}).
    """
    dispatcher = with_worker()
    frontend = dispatcher.frontend_client()

    async def take_two() -> List[str]:
        return [(await frontend.next_worker()).worker_id for _ in range(2)]

    taken: Deferred[List[str]] = Deferred.fromCoroutine(take_two())
    dispatcher.flush()
    assert result_of(taken) == ["w1", "w1"]
