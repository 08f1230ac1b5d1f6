"""
L{SchedulerClient}: seq numbering and resync on the wire (scripted server),
and its calls against the real dispatcher protocol (in memory).
"""

from __future__ import annotations

from typing import Any, List

from amp_dispatch_commands import SCHEDULER_COMMANDS, InvalidArgument, WorkerGone, WorkerUpdate

from amp_dispatch.client import (
    DispatcherUnavailable,
    RegisteredWorker,
    SchedulerClient,
    WorkerPage,
)
from amp_dispatch.store._interface import WorkerReport
from tests._client_helpers import (
    SCHEDULER,
    SCHEDULER_PORT,
    Deployment,
    Network,
    Script,
    failure,
    fixed_retry,
    success,
)
from tests._memory import registered

UPDATE = WorkerUpdate.commandName


class Scheduler:
    """
    A L{SchedulerClient} and a scripted scheduler listener in a L{Network};
    updates and removals are answered at once.
    """

    def __init__(self) -> None:
        self.network = Network()
        self.reactor = self.network.reactor
        self.script = Script(SCHEDULER_COMMANDS)
        self.script.auto[UPDATE] = {"accepted": True}
        self.script.auto[WorkerGone.commandName] = {"known": True}
        self.network.listen(SCHEDULER_PORT, self.script.factory())
        self.client = SchedulerClient(self.reactor, SCHEDULER, retry_policy=fixed_retry)

    def connected(self) -> Scheduler:
        self.client.start()
        self.pump = self.network.complete()
        return self

    def reconnect(self) -> None:
        """
        Drop the connection, wait the retry delay, let the new one through.
        """
        self.network.drop(self.pump)
        self.reactor.advance(1.0)
        self.pump = self.network.complete()
        self.network.flush()

    def seqs(self) -> List[int]:
        return [int(args["seq"]) for args in self.script.sent(UPDATE)]


def test_seq_is_microseconds_of_reactor_time() -> None:
    """
    An update without C{seq} is numbered with the reactor's time in
    microseconds.
    """
    scheduler = Scheduler().connected()
    scheduler.reactor.advance(12.5)
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.network.flush()
    assert scheduler.seqs() == [12_500_000]


def test_seq_grows_when_time_stands_still() -> None:
    """
    Updates of a worker sent within the same microsecond get growing seqs.
    """
    scheduler = Scheduler().connected()
    scheduler.reactor.advance(3.0)
    for capacity in (1, 2, 3):
        scheduler.client.update("w1", "h", 1, capacity)
    scheduler.network.flush()
    assert scheduler.seqs() == [3_000_000, 3_000_001, 3_000_002]


def test_seqs_are_per_worker() -> None:
    """
    Each worker's updates are numbered on their own.
    """
    scheduler = Scheduler().connected()
    scheduler.reactor.advance(3.0)
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.client.update("w2", "h", 1, 1)
    scheduler.network.flush()
    assert scheduler.seqs() == [3_000_000, 3_000_000]


def test_caller_seq_sent_as_given_and_followed() -> None:
    """
    A seq the caller passes is sent as given, and the worker's next
    client-numbered update follows it.
    """
    scheduler = Scheduler().connected()
    scheduler.client.update("w1", "h", 1, 1, seq=10**16)
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.network.flush()
    assert scheduler.seqs() == [10**16, 10**16 + 1]


def test_seq_given_when_sent() -> None:
    """
    An update made before the connection is up is numbered when it is sent.
    """
    scheduler = Scheduler()
    scheduler.client.start()
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.reactor.advance(2.0)
    scheduler.network.complete()
    scheduler.network.flush()
    assert scheduler.seqs() == [2_000_000]


def test_update_arguments_on_the_wire() -> None:
    """
    An update sends its arguments, pool and ttl included when given.
    """
    scheduler = Scheduler().connected()
    scheduler.client.update("w1", "host.example", 8080, 4, pool="gpu", seq=7, ttl=60.0)
    scheduler.network.flush()
    assert scheduler.script.sent(UPDATE) == [
        {
            "worker_id": b"w1",
            "host": b"host.example",
            "port": b"8080",
            "capacity": b"4",
            "pool": b"gpu",
            "seq": b"7",
            "ttl": b"60.0",
        }
    ]


def test_resync_resends_last_update_of_every_worker() -> None:
    """
    After a reconnect the client sends the last update of each worker again,
    unchanged (same seq).
    """
    scheduler = Scheduler().connected()
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.reactor.advance(1.0)
    scheduler.client.update("w1", "h", 1, 5, ttl=9.0)
    scheduler.client.update("w2", "h", 2, 2, pool="p")
    scheduler.network.flush()
    before = scheduler.script.sent(UPDATE)
    scheduler.reconnect()
    assert scheduler.script.sent(UPDATE)[3:] == before[1:]


def test_resync_goes_before_waiting_calls() -> None:
    """
    Calls made while disconnected go out after the resent updates.
    """
    scheduler = Scheduler().connected()
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.network.flush()
    scheduler.network.drop(scheduler.pump)
    scheduler.client.update("w2", "h", 1, 1)
    scheduler.client.gone("w3")
    scheduler.reactor.advance(1.0)
    scheduler.network.complete()
    scheduler.network.flush()
    names = [box[b"_command"] for box in scheduler.script.received]
    ids = [box[b"worker_id"] for box in scheduler.script.received]
    assert names == [UPDATE, UPDATE, UPDATE, WorkerGone.commandName]
    assert ids == [b"w1", b"w1", b"w2", b"w3"]


def test_gone_forgets_worker() -> None:
    """
    A worker removed with C{gone} is not resent after a reconnect.
    """
    scheduler = Scheduler().connected()
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.client.update("w2", "h", 1, 1)
    scheduler.client.gone("w1")
    scheduler.network.flush()
    scheduler.reconnect()
    resent = scheduler.script.sent(UPDATE)[2:]
    assert [args["worker_id"] for args in resent] == [b"w2"]


def test_update_never_sent_is_not_remembered() -> None:
    """
    An update that failed before it was sent (no connection in time) is not
    resent on the next connection.
    """
    scheduler = Scheduler()
    scheduler.client.start()
    d = scheduler.client.update("w1", "h", 1, 1)
    scheduler.reactor.advance(5.0)
    failure(d, DispatcherUnavailable)
    scheduler.network.complete()
    scheduler.network.flush()
    assert scheduler.script.sent(UPDATE) == []


def test_update_out_of_range_fails_and_is_not_remembered() -> None:
    """
    An update with a value out of range fails with L{InvalidArgument} naming
    the field, is not sent, and is not resent later.
    """
    scheduler = Scheduler().connected()
    d = scheduler.client.update("w1", "h", 0, 1)
    assert str(failure(d, InvalidArgument).value) == "port: must be within 1..65535"
    scheduler.network.flush()
    scheduler.reconnect()
    assert scheduler.script.sent(UPDATE) == []


def test_resent_update_refused_is_forgotten() -> None:
    """
    A resent update the dispatcher refuses as invalid is not resent again.
    """
    scheduler = Scheduler().connected()
    scheduler.client.update("w1", "h", 1, 1)
    scheduler.network.flush()
    del scheduler.script.auto[UPDATE]
    scheduler.reconnect()
    scheduler.script.pending[0].errback(InvalidArgument("host: not resolvable"))
    scheduler.network.flush()
    scheduler.reconnect()
    assert len(scheduler.script.sent(UPDATE)) == 2


# -- against the real dispatcher protocol --------------------------------------


def ready(lease_grace: float = 30.0) -> Deployment:
    """
    A dispatcher with its scheduler client connected.
    """
    deployment = Deployment(lease_grace=lease_grace)
    deployment.connect(deployment.scheduler)
    return deployment


def reconnect(deployment: Deployment) -> None:
    """
    Drop the scheduler client's connection and let its next one through.
    """
    [pump] = deployment.network.pumps
    deployment.network.drop(pump)
    deployment.network.pumps.remove(pump)
    deployment.reactor.advance(1.0)
    deployment.network.complete()
    deployment.network.flush()


def run(deployment: Deployment, d: Any) -> Any:
    """
    Flush the network and return what C{d} fired with.
    """
    deployment.network.flush()
    return success(d)


def test_update_accepted() -> None:
    """
    A first update is accepted, and the dispatcher registers the worker.
    """
    deployment = ready()
    assert run(deployment, deployment.scheduler.update("w1", "h", 1, 2)) is True
    assert deployment.store.stats().workers == 1


def test_update_with_repeated_seq_not_accepted() -> None:
    """
    An update repeating the last accepted seq is answered C{False}.
    """
    deployment = ready()
    run(deployment, deployment.scheduler.update("w1", "h", 1, 2, seq=5))
    assert run(deployment, deployment.scheduler.update("w1", "h", 1, 9, seq=5)) is False


def test_gone_known_and_unknown() -> None:
    """
    C{gone} fires with whether the dispatcher knew the worker.
    """
    deployment = ready()
    run(deployment, deployment.scheduler.update("w1", "h", 1, 2))
    assert run(deployment, deployment.scheduler.gone("w1")) is True
    assert run(deployment, deployment.scheduler.gone("w1")) is False


def test_list_workers_page() -> None:
    """
    C{list_workers} fires with a L{WorkerPage} of L{RegisteredWorker}s and
    the C{next_after} to continue from.
    """
    deployment = ready()
    deployment.store.update(WorkerReport("b", "hb", 2, 3, pool="p"))
    deployment.store.update(WorkerReport("a", "ha", 1, 1))
    page = run(deployment, deployment.scheduler.list_workers(limit=1))
    assert page == WorkerPage([RegisteredWorker("a", "ha", 1, "default", 1, 1, -1.0)], "a")


def test_list_workers_last_page_has_no_next_after() -> None:
    """
    The last page's C{next_after} is C{None}.
    """
    deployment = ready()
    deployment.store.update(WorkerReport("a", "h", 1, 1))
    deployment.store.update(WorkerReport("b", "h", 1, 1))
    page = run(deployment, deployment.scheduler.list_workers(after="a"))
    assert [w.worker_id for w in page.workers] == ["b"]
    assert page.next_after is None


def test_all_workers_follows_pages() -> None:
    """
    C{all_workers} collects every worker over as many pages as it takes.
    """
    deployment = ready()
    ids = [f"w{i:04d}" for i in range(1234)]
    for worker_id in ids:
        deployment.store.update(WorkerReport(worker_id, "h", 1, 1, pool="p"))
    deployment.store.update(WorkerReport("other", "h", 1, 1))
    d = deployment.scheduler.all_workers(pool="p")
    deployment.network.flush()
    assert [w.worker_id for w in success(d)] == ids


def test_resync_refills_restarted_dispatcher() -> None:
    """
    After the dispatcher restarts empty, the reconnected client registers its
    workers again.
    """
    deployment = ready()
    run(deployment, deployment.scheduler.update("w1", "h", 1, 2))
    run(deployment, deployment.scheduler.update("w2", "h", 1, 3, pool="p"))
    fresh = deployment.restart()
    reconnect(deployment)
    rows = {(w.worker_id, w.pool, w.capacity) for w in registered(fresh)}
    assert rows == {("w1", "default", 2), ("w2", "p", 3)}


def test_resync_does_not_reset_dispatcher_that_kept_state() -> None:
    """
    Resent updates reaching a dispatcher that kept its state are duplicates:
    slots taken since are not given back.
    """
    deployment = ready()
    run(deployment, deployment.scheduler.update("w1", "h", 1, 2))
    deployment.store.next_worker()
    reconnect(deployment)
    assert [w.free for w in registered(deployment.store)] == [1]


def test_resync_renews_lease_on_new_connection() -> None:
    """
    The reconnected client's resent updates hold its workers: they outlive
    the lost connection's lease grace.
    """
    deployment = ready(lease_grace=10.0)
    run(deployment, deployment.scheduler.update("w1", "h", 1, 2))
    reconnect(deployment)
    deployment.reactor.advance(60.0)
    assert deployment.store.stats().workers == 1


def test_stats_on_scheduler_listener() -> None:
    """
    The scheduler client's C{stats} works on the scheduler listener.
    """
    deployment = ready()
    run(deployment, deployment.scheduler.update("w1", "h", 1, 2))
    stats = run(deployment, deployment.scheduler.stats())
    assert (stats.workers, stats.free_slots, stats.protocol) == (1, 2, 1)
