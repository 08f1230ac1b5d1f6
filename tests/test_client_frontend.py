"""
L{FrontendClient} against the real dispatcher protocol, in memory on a
L{MemoryReactorClock}.
"""

from __future__ import annotations

import attrs
import pytest
from amp_dispatch_commands import NoWorkerAvailable, Overloaded

from amp_dispatch.client import DispatcherStats, Worker
from amp_dispatch.store._interface import WorkerReport
from tests._client_helpers import Deployment, failure, fired, success


def ready(max_waiting: int = 10_000) -> Deployment:
    """
    A dispatcher with both clients connected.
    """
    deployment = Deployment(max_waiting=max_waiting)
    deployment.connect(deployment.frontend)
    deployment.connect(deployment.scheduler)
    return deployment


def test_next_worker_answers_worker() -> None:
    """
    C{next_worker} fires with the L{Worker} the dispatcher answers.
    """
    deployment = ready()
    deployment.store.update(WorkerReport("w1", "10.0.0.1", 9000, 1))
    d = deployment.frontend.next_worker()
    deployment.network.flush()
    assert success(d) == Worker("w1", "10.0.0.1", 9000)


def test_next_worker_asks_the_named_pool() -> None:
    """
    C{next_worker(pool=...)} is answered from that pool only.
    """
    deployment = ready()
    deployment.store.update(WorkerReport("cpu", "h", 1, 5))
    deployment.store.update(WorkerReport("gpu", "h", 2, 1, pool="gpu"))
    d = deployment.frontend.next_worker(pool="gpu")
    deployment.network.flush()
    assert success(d).worker_id == "gpu"


def test_next_worker_fails_no_worker_available() -> None:
    """
    With no free slot and no timeout, C{next_worker} fails with the schema's
    L{NoWorkerAvailable}.
    """
    deployment = ready()
    d = deployment.frontend.next_worker()
    deployment.network.flush()
    failure(d, NoWorkerAvailable)


def test_next_worker_fails_overloaded() -> None:
    """
    A waiting call beyond the dispatcher's limit fails with L{Overloaded}.
    """
    deployment = ready(max_waiting=0)
    d = deployment.frontend.next_worker(timeout=1.0)
    deployment.network.flush()
    failure(d, Overloaded)


def test_waiting_next_worker_answered_by_later_update() -> None:
    """
    A C{next_worker} call with a timeout is answered when a scheduler update
    frees a slot while it waits.
    """
    deployment = ready()
    d = deployment.frontend.next_worker(timeout=30.0)
    deployment.network.flush()
    assert not fired(d)
    deployment.scheduler.update("w1", "h", 7, 1)
    deployment.network.flush()
    assert success(d) == Worker("w1", "h", 7)


def test_waiting_next_worker_fails_when_dispatcher_timeout_runs_out() -> None:
    """
    A waiting call gets the dispatcher's L{NoWorkerAvailable} when its timeout
    runs out, not a client-side timeout (the client allows for the wait).
    """
    deployment = ready()
    d = deployment.frontend.next_worker(timeout=10.0)
    deployment.network.flush()
    deployment.reactor.advance(10.0)
    deployment.network.flush()
    failure(d, NoWorkerAvailable)


def test_stats() -> None:
    """
    C{stats} fires with the dispatcher's counters as L{DispatcherStats}.
    """
    deployment = ready()
    deployment.store.update(WorkerReport("w1", "h", 1, 3))
    deployment.frontend.next_worker()
    deployment.network.flush()
    d = deployment.frontend.stats()
    deployment.network.flush()
    assert success(d) == DispatcherStats(
        workers=1, free_slots=2, waiting=0, dispatched=1, protocol=1
    )


def test_worker_is_frozen() -> None:
    """
    A L{Worker} cannot be changed.
    """
    worker = Worker("w1", "h", 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        worker.port = 2  # type: ignore[misc]
