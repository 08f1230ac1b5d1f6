"""
L{FrontendClient} against the real dispatcher, in memory
(L{amp_dispatch.testing.MemoryDispatcher}).
"""

from __future__ import annotations

from typing import Optional, Tuple

import attrs
import pytest
from amp_dispatch_commands import NoWorkerAvailable, Overloaded

from amp_dispatch.client import DispatcherStats, FrontendClient, Worker
from amp_dispatch.server._config import DEFAULT_CONFIG, DispatcherConfig
from amp_dispatch.testing import MemoryDispatcher
from tests._deferreds import failure_of, fired, result_of


def ready(config: DispatcherConfig = DEFAULT_CONFIG) -> Tuple[MemoryDispatcher, FrontendClient]:
    """
    A dispatcher with C{config}, and a front-end client of it.
    """
    dispatcher = MemoryDispatcher(config)
    return dispatcher, dispatcher.frontend_client()


def register(
    dispatcher: MemoryDispatcher,
    worker_id: str,
    host: str,
    port: int,
    capacity: int,
    pool: Optional[str] = None,
) -> None:
    """
    Register a worker with a scheduler client of C{dispatcher}.
    """
    dispatcher.scheduler_client().update(worker_id, host, port, capacity, pool=pool)
    dispatcher.flush()


def test_next_worker_answers_worker() -> None:
    """
    C{next_worker} fires with the L{Worker} the dispatcher answers.
    """
    dispatcher, frontend = ready()
    register(dispatcher, "w1", "10.0.0.1", 9000, 1)
    d = frontend.next_worker()
    dispatcher.flush()
    assert result_of(d) == Worker("w1", "10.0.0.1", 9000)


def test_next_worker_asks_the_named_pool() -> None:
    """
    C{next_worker(pool=...)} is answered from that pool only.
    """
    dispatcher, frontend = ready()
    register(dispatcher, "cpu", "h", 1, 5)
    register(dispatcher, "gpu", "h", 2, 1, pool="gpu")
    d = frontend.next_worker(pool="gpu")
    dispatcher.flush()
    assert result_of(d).worker_id == "gpu"


def test_next_worker_fails_no_worker_available() -> None:
    """
    With no free slot and no timeout, C{next_worker} fails with the schema's
    L{NoWorkerAvailable}.
    """
    dispatcher, frontend = ready()
    d = frontend.next_worker()
    dispatcher.flush()
    failure_of(d, NoWorkerAvailable)


def test_next_worker_fails_overloaded() -> None:
    """
    A waiting call beyond the dispatcher's limit fails with L{Overloaded}.
    """
    dispatcher, frontend = ready(DispatcherConfig(max_waiting=0))
    d = frontend.next_worker(timeout=1.0)
    dispatcher.flush()
    failure_of(d, Overloaded)


def test_waiting_next_worker_answered_by_later_update() -> None:
    """
    A C{next_worker} call with a timeout is answered when a scheduler update
    frees a slot while it waits.
    """
    dispatcher, frontend = ready()
    d = frontend.next_worker(timeout=30.0)
    dispatcher.flush()
    assert not fired(d)
    register(dispatcher, "w1", "h", 7, 1)
    assert result_of(d) == Worker("w1", "h", 7)


def test_waiting_next_worker_fails_when_dispatcher_timeout_runs_out() -> None:
    """
    A waiting call gets the dispatcher's L{NoWorkerAvailable} when its timeout
    runs out, not a client-side timeout (the client allows for the wait).
    """
    dispatcher, frontend = ready()
    d = frontend.next_worker(timeout=10.0)
    dispatcher.flush()
    dispatcher.clock.advance(10.0)
    dispatcher.flush()
    failure_of(d, NoWorkerAvailable)


def test_stats() -> None:
    """
    C{stats} fires with the dispatcher's counters as L{DispatcherStats}.
    """
    dispatcher, frontend = ready()
    register(dispatcher, "w1", "h", 1, 3)
    frontend.next_worker()
    dispatcher.flush()
    d = frontend.stats()
    dispatcher.flush()
    assert result_of(d) == DispatcherStats(
        workers=1, free_slots=2, waiting=0, dispatched=1, protocol=1
    )


def test_worker_is_frozen() -> None:
    """
    A L{Worker} cannot be changed.
    """
    worker = Worker("w1", "h", 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        worker.port = 2  # type: ignore[misc]
