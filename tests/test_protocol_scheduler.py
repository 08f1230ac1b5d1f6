"""
The scheduler listener over in-memory connections: C{WorkerUpdate},
C{WorkerGone}, C{ListWorkers} and C{Stats}, their errors, worker leases, and
C{NextWorker} refused there.
"""

from __future__ import annotations

from typing import Dict, List, Optional, cast

import pytest
from amp_dispatch_commands import (
    MAX_CAPACITY,
    MAX_TTL,
    ListWorkers,
    NextWorker,
    Stats,
    WorkerGone,
    WorkerUpdate,
)
from twisted.protocols import amp

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
    return RawDispatcher(lease_grace=30.0, fast_path=fast_path, later=later)


@pytest.fixture
def scheduler(memory: RawDispatcher) -> Connection:
    return memory.scheduler()


def ids(memory: RawDispatcher) -> List[str]:
    """
    The ids of the registered workers, all pages.
    """
    return [row["worker_id"] for row in memory.workers()]


# -- WorkerUpdate ---------------------------------------------------------------


def test_update_accepted(scheduler: Connection) -> None:
    """
    An update of a new worker is accepted.
    """
    assert update(scheduler, "w1") is True


def test_update_registers(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    An accepted update registers the worker as sent.
    """
    update(scheduler, "w1", capacity=4, host="192.0.2.1", port=7000, pool="gpu")
    assert memory.workers() == [
        {
            "worker_id": "w1",
            "host": "192.0.2.1",
            "port": 7000,
            "pool": "gpu",
            "capacity": 4,
            "free": 4,
            "expires_in": -1.0,
        }
    ]


def test_update_default_pool(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    Without C{pool}, the worker joins the pool C{"default"}.
    """
    update(scheduler, "w1")
    assert memory.worker("w1")["pool"] == "default"


def test_update_replaces(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A second accepted update replaces the worker's address and capacity.
    """
    update(scheduler, "w1", capacity=1, host="192.0.2.1", port=7000)
    update(scheduler, "w1", capacity=5, host="192.0.2.2", port=7001)
    row = memory.worker("w1")
    assert (row["host"], row["port"], row["capacity"]) == ("192.0.2.2", 7001, 5)


def test_update_resets_assumed_load(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    An accepted update forgets the answers given since the last one.
    """
    update(scheduler, "w1", capacity=2)
    memory.frontend().call(NextWorker)
    update(scheduler, "w1", capacity=2)
    assert memory.worker("w1")["free"] == 2


def test_update_moves_pool(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    An update naming another pool moves the worker there.
    """
    update(scheduler, "w1", pool="a")
    update(scheduler, "w1", pool="b")
    assert ([r["worker_id"] for r in memory.workers("a")], memory.worker("w1")["pool"]) == (
        [],
        "b",
    )


def test_update_higher_seq_accepted(scheduler: Connection) -> None:
    """
    An update with a higher C{seq} than the last accepted is accepted.
    """
    update(scheduler, "w1", seq=5)
    assert update(scheduler, "w1", seq=6, capacity=3) is True


def test_update_stale(scheduler: Connection) -> None:
    """
    An update with a lower C{seq} than the last accepted is refused.
    """
    update(scheduler, "w1", seq=5)
    assert update(scheduler, "w1", seq=4, capacity=3) is False


def test_update_stale_changes_nothing(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A stale update changes nothing.
    """
    update(scheduler, "w1", seq=5, capacity=1, ttl=10.0)
    memory.clock.advance(4.0)
    before = memory.snapshot()
    update(scheduler, "w1", seq=4, capacity=3, host="192.0.2.9", pool="other")
    assert memory.snapshot() == before


def test_update_duplicate(scheduler: Connection) -> None:
    """
    An update with the same C{seq} as the last accepted is refused.
    """
    update(scheduler, "w1", seq=5)
    assert update(scheduler, "w1", seq=5, capacity=3) is False


def test_update_duplicate_changes_nothing_else(
    memory: RawDispatcher, scheduler: Connection
) -> None:
    """
    A duplicate update changes nothing but the lease and ttl.
    """
    update(scheduler, "w1", seq=5, capacity=2)
    memory.frontend().call(NextWorker)
    before = memory.snapshot()
    update(scheduler, "w1", seq=5, capacity=7, host="192.0.2.9", pool="other")
    assert memory.snapshot() == before


def test_update_duplicate_renews_ttl(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A duplicate update starts the worker's ttl again.
    """
    update(scheduler, "w1", seq=5, ttl=10.0)
    memory.clock.advance(6.0)
    update(scheduler, "w1", seq=5, ttl=10.0)
    assert memory.worker("w1")["expires_in"] == pytest.approx(10.0)


def test_update_without_seq_forgets_seq(scheduler: Connection) -> None:
    """
    An update without C{seq} is accepted and forgets the stored seq.
    """
    update(scheduler, "w1", seq=5)
    assert update(scheduler, "w1") is True
    assert update(scheduler, "w1", seq=1) is True


def test_update_after_removal_forgets_seq(scheduler: Connection) -> None:
    """
    A removed worker's next update is accepted whatever its seq.
    """
    update(scheduler, "w1", seq=5)
    scheduler.call(WorkerGone, worker_id="w1")
    assert update(scheduler, "w1", seq=1) is True


def test_ttl_removes(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    An update with C{ttl} removes the worker that many seconds later.
    """
    update(scheduler, "w1", ttl=10.0)
    memory.clock.advance(9.9)
    assert ids(memory) == ["w1"]
    memory.clock.advance(0.1)
    assert ids(memory) == []


# -- WorkerGone -----------------------------------------------------------------


def test_gone_known(scheduler: Connection) -> None:
    """
    C{WorkerGone} of a registered worker answers C{known} = True.
    """
    update(scheduler, "w1")
    assert scheduler.call(WorkerGone, worker_id="w1") == {"known": True}


def test_gone_removes(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    C{WorkerGone} removes the worker at once, and only it.
    """
    update(scheduler, "w1")
    update(scheduler, "w2")
    scheduler.call(WorkerGone, worker_id="w1")
    assert ids(memory) == ["w2"]


def test_gone_unknown(scheduler: Connection) -> None:
    """
    C{WorkerGone} of an unregistered worker answers C{known} = False.
    """
    assert scheduler.call(WorkerGone, worker_id="nobody") == {"known": False}


def test_gone_idempotent(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A second C{WorkerGone} of the same worker answers C{known} = False.
    """
    update(scheduler, "w1")
    scheduler.call(WorkerGone, worker_id="w1")
    assert scheduler.call(WorkerGone, worker_id="w1") == {"known": False}


def test_gone_not_answered(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A removed worker is no longer answered by C{NextWorker}.
    """
    update(scheduler, "w1", capacity=3)
    update(scheduler, "w2", capacity=1)
    scheduler.call(WorkerGone, worker_id="w1")
    assert memory.frontend().call(NextWorker)["worker_id"] == "w2"


# -- Stats ----------------------------------------------------------------------


def test_stats_on_scheduler(scheduler: Connection) -> None:
    """
    The scheduler listener serves C{Stats} too, protocol 1.
    """
    update(scheduler, "w1", capacity=3)
    answer = scheduler.call(Stats)
    assert (answer["workers"], answer["free_slots"], answer["protocol"]) == (1, 3, 1)


# -- ListWorkers ----------------------------------------------------------------


def register(scheduler: Connection, *worker_ids: str, pool: str = "default") -> None:
    for worker_id in worker_ids:
        update(scheduler, worker_id, pool=pool)


def page_ids(answer: Dict[str, object]) -> List[str]:
    rows = answer["workers"]
    assert isinstance(rows, list)
    return [row["worker_id"] for row in rows]


def test_list_empty(scheduler: Connection) -> None:
    """
    With no worker, C{ListWorkers} answers no rows and no C{next_after}.
    """
    answer = scheduler.call(ListWorkers)
    assert (answer["workers"], b"next_after" in scheduler.last_box) == ([], False)


def test_list_order(scheduler: Connection) -> None:
    """
    Rows come in C{worker_id} order, whatever order the workers came in.
    """
    register(scheduler, "c", "a", "b")
    assert page_ids(scheduler.call(ListWorkers)) == ["a", "b", "c"]


def test_list_first_page(scheduler: Connection) -> None:
    """
    C{limit} bounds the page, and C{next_after} names its last worker.
    """
    register(scheduler, "a", "b", "c", "d", "e")
    answer = scheduler.call(ListWorkers, limit=2)
    assert (page_ids(answer), answer["next_after"]) == (["a", "b"], "b")


def test_list_after(scheduler: Connection) -> None:
    """
    C{after} starts the page at the first id greater than it.
    """
    register(scheduler, "a", "b", "c", "d", "e")
    answer = scheduler.call(ListWorkers, after="b", limit=2)
    assert (page_ids(answer), answer["next_after"]) == (["c", "d"], "d")


def test_list_after_unregistered(scheduler: Connection) -> None:
    """
    C{after} need not be a registered id.
    """
    register(scheduler, "a", "c", "e")
    assert page_ids(scheduler.call(ListWorkers, after="b")) == ["c", "e"]


def test_list_last_page(scheduler: Connection) -> None:
    """
    The last page has no C{next_after}.
    """
    register(scheduler, "a", "b", "c", "d", "e")
    answer = scheduler.call(ListWorkers, after="d", limit=2)
    assert (page_ids(answer), b"next_after" in scheduler.last_box) == (["e"], False)


def test_list_exactly_full(scheduler: Connection) -> None:
    """
    A page that ends with the last worker has no C{next_after}.
    """
    register(scheduler, "a", "b")
    scheduler.call(ListWorkers, limit=2)
    assert b"next_after" not in scheduler.last_box


def test_list_default_limit(scheduler: Connection) -> None:
    """
    Without C{limit}, a page holds 100 workers.
    """
    register(scheduler, *(f"w{i:03d}" for i in range(101)))
    answer = scheduler.call(ListWorkers)
    assert (len(page_ids(answer)), answer["next_after"]) == (100, "w099")


def test_list_max_limit(scheduler: Connection) -> None:
    """
    C{limit} = 500 gives pages of 500 workers.
    """
    register(scheduler, *(f"w{i:03d}" for i in range(501)))
    answer = scheduler.call(ListWorkers, limit=500)
    assert (len(page_ids(answer)), answer["next_after"]) == (500, "w499")


def test_list_pool(scheduler: Connection) -> None:
    """
    C{pool} lists that pool's workers only.
    """
    register(scheduler, "a1", "a2", pool="a")
    register(scheduler, "b1", pool="b")
    assert page_ids(scheduler.call(ListWorkers, pool="a")) == ["a1", "a2"]


def test_list_unknown_pool(scheduler: Connection) -> None:
    """
    A pool with no worker lists no rows.
    """
    register(scheduler, "a1", pool="a")
    assert scheduler.call(ListWorkers, pool="none")["workers"] == []


def test_list_all_pools_in_id_order(scheduler: Connection) -> None:
    """
    Without C{pool}, every pool's workers come in one C{worker_id} order.
    """
    register(scheduler, "a", "d", pool="x")
    register(scheduler, "b", "c", "e", pool="y")
    assert page_ids(scheduler.call(ListWorkers)) == ["a", "b", "c", "d", "e"]


def test_list_pool_paging(scheduler: Connection) -> None:
    """
    Paging within a pool continues with that pool's workers.
    """
    register(scheduler, "a1", "a2", "a3", pool="a")
    register(scheduler, "a15", pool="b")
    answer = scheduler.call(ListWorkers, pool="a", after="a1", limit=1)
    assert (page_ids(answer), answer["next_after"]) == (["a2"], "a2")


def test_list_free(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    C{free} is the capacity less the answers given since the last update.
    """
    update(scheduler, "w1", capacity=3)
    memory.frontend().call(NextWorker)
    row = memory.worker("w1")
    assert (row["capacity"], row["free"]) == (3, 2)


def test_expires_in_none(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    C{expires_in} is -1 while no removal is pending.
    """
    update(scheduler, "w1")
    memory.clock.advance(100.0)
    assert memory.worker("w1")["expires_in"] == -1.0


def test_expires_in_ttl(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    C{expires_in} counts down the worker's ttl.
    """
    update(scheduler, "w1", ttl=10.0)
    memory.clock.advance(4.0)
    assert memory.worker("w1")["expires_in"] == pytest.approx(6.0)


def test_expires_in_lease_grace(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    After its scheduler connection closes, C{expires_in} counts down the
    lease grace.
    """
    update(scheduler, "w1")
    scheduler.close()
    memory.clock.advance(5.0)
    assert memory.worker("w1")["expires_in"] == pytest.approx(25.0)


def test_expires_in_earliest(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    With both a ttl and a lease grace pending, C{expires_in} is the earlier.
    """
    update(scheduler, "w1", ttl=12.0)
    scheduler.close()
    memory.clock.advance(2.0)
    assert memory.worker("w1")["expires_in"] == pytest.approx(10.0)


LONG = 255


def long_text(prefix: str) -> str:
    return prefix + "x" * (LONG - len(prefix))


@pytest.fixture
def crowded(memory: RawDispatcher, scheduler: Connection) -> Connection:
    """
    500 workers whose ids, hosts and pools are 255 bytes each.
    """
    for i in range(500):
        update(
            scheduler,
            long_text(f"{i:03d}"),
            capacity=MAX_CAPACITY,
            host=long_text("h"),
            port=65535,
            pool=long_text("p"),
            ttl=MAX_TTL,
        )
    return scheduler


def test_large_page_values_fit(crowded: Connection) -> None:
    """
    A C{limit} = 500 page of workers with 255-byte fields keeps every value
    under AMP's 65,535-byte limit.
    """
    crowded.call(ListWorkers, limit=500)
    assert max(len(value) for value in crowded.last_box.values()) < 65_535


def test_large_page_continues(crowded: Connection) -> None:
    """
    Following C{next_after} lists every one of 500 workers with 255-byte
    fields once, in order.
    """
    seen: List[str] = []
    arguments: Dict[str, object] = {"limit": 500}
    for _ in range(500):
        answer = crowded.call(ListWorkers, **arguments)
        seen.extend(page_ids(answer))
        if b"next_after" not in crowded.last_box:
            break
        assert answer["next_after"] == seen[-1]
        arguments["after"] = answer["next_after"]
    assert seen == [long_text(f"{i:03d}") for i in range(500)]


# -- leases ---------------------------------------------------------------------


def test_lease_grace_zero(fast_path: bool) -> None:
    """
    With lease grace 0, a closed scheduler connection's workers go at once.
    """
    memory = RawDispatcher(lease_grace=0.0, fast_path=fast_path)
    scheduler = memory.scheduler()
    register(scheduler, "a", "b")
    scheduler.close()
    assert memory.stats()["workers"] == 0


def test_lease_grace_zero_only_own(fast_path: bool) -> None:
    """
    A closed scheduler connection's workers go, not another connection's.
    """
    memory = RawDispatcher(lease_grace=0.0, fast_path=fast_path)
    leaving, staying = memory.scheduler(), memory.scheduler()
    register(leaving, "a")
    register(staying, "b")
    leaving.close()
    assert ids(memory) == ["b"]


def test_lease_grace_keeps_until_due(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    Within the lease grace, a closed connection's workers stay and are answered.
    """
    register(scheduler, "a")
    scheduler.close()
    memory.clock.advance(29.9)
    assert memory.frontend().call(NextWorker)["worker_id"] == "a"


def test_lease_grace_removes(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A closed connection's workers go once the lease grace has passed.
    """
    register(scheduler, "a", "b")
    scheduler.close()
    memory.clock.advance(30.0)
    assert memory.stats()["workers"] == 0


def test_lease_taken_over_by_update(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    An accepted update on another connection within the grace keeps the worker.
    """
    register(scheduler, "a", "b")
    scheduler.close()
    memory.clock.advance(10.0)
    update(memory.scheduler(), "a")
    memory.clock.advance(20.0)
    assert ids(memory) == ["a"]


def test_lease_taken_over_by_duplicate(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A duplicate update on another connection within the grace keeps the worker.
    """
    update(scheduler, "a", seq=3)
    scheduler.close()
    memory.clock.advance(10.0)
    assert update(memory.scheduler(), "a", seq=3) is False
    memory.clock.advance(20.0)
    assert ids(memory) == ["a"]


def test_lease_not_taken_over_by_stale(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A stale update on another connection does not keep the worker.
    """
    update(scheduler, "a", seq=3)
    scheduler.close()
    update(memory.scheduler(), "a", seq=2)
    memory.clock.advance(30.0)
    assert ids(memory) == []


def test_lease_new_holder_closes(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    The connection that took a worker over holds its lease: when it closes,
    the grace starts again from then.
    """
    register(scheduler, "a")
    scheduler.close()
    memory.clock.advance(10.0)
    holder = memory.scheduler()
    update(holder, "a")
    holder.close()
    memory.clock.advance(29.0)
    assert ids(memory) == ["a"]


# -- NextWorker is not served here --------------------------------------------


@pytest.fixture
def registered(memory: RawDispatcher, scheduler: Connection) -> Connection:
    update(scheduler, "w1", capacity=2)
    return scheduler


def test_next_worker_unhandled(registered: Connection) -> None:
    """
    C{NextWorker} on the scheduler listener gets AMP's unhandled-command error.
    """
    with pytest.raises(amp.UnhandledCommand):
        registered.call(NextWorker)


def test_next_worker_changes_nothing(memory: RawDispatcher, registered: Connection) -> None:
    """
    C{NextWorker} on the scheduler listener takes no slot and changes nothing.
    """
    before = memory.snapshot()
    registered.send(NextWorker, timeout=5.0)
    assert memory.snapshot() == before


def test_next_worker_keeps_connection(registered: Connection) -> None:
    """
    After C{NextWorker}, the scheduler connection answers the next call.
    """
    registered.send(NextWorker)
    assert update(registered, "w2") is True


# -- INVALID_ARGUMENT -----------------------------------------------------------

UPDATE = {"worker_id": b"w9", "host": b"10.0.0.9", "port": b"9000", "capacity": b"1"}
TOO_LONG = "\u00e9".encode() * 128  # 256 UTF-8 bytes
BAD_UTF8 = b"w\xff\xfe"


def _update(field: str, value: Optional[bytes]) -> Invalid:
    return invalid("scheduler", WorkerUpdate, UPDATE, field, value)


def _gone(value: Optional[bytes]) -> Invalid:
    return invalid("scheduler", WorkerGone, {"worker_id": b"w1"}, "worker_id", value)


def _list(field: str, value: bytes) -> Invalid:
    return invalid("scheduler", ListWorkers, {}, field, value)


INVALID_SCHEDULER = [
    *(_update(field, None) for field in ("worker_id", "host", "port", "capacity")),
    _gone(None),
    _update("port", b"abc"),
    _update("port", b"80.5"),
    _update("capacity", b"abc"),
    _update("seq", b"abc"),
    _update("ttl", b"abc"),
    *(_update(field, b"") for field in ("worker_id", "pool", "host")),
    _gone(b""),
    _list("pool", b""),
    *(_update(field, TOO_LONG) for field in ("worker_id", "pool", "host")),
    _update("worker_id", long_text("").encode() + b"x"),
    _gone(TOO_LONG),
    _list("pool", TOO_LONG),
    *(_update("worker_id", b"w" + c) for c in (b"\x00", b"\n", b"\x7f", "\x85".encode())),
    *(_update("pool", b"p" + c) for c in (b"\x00", b"\n", b"\x7f")),
    _gone(b"w1\n"),
    _list("pool", b"p\x00"),
    _update("port", b"0"),
    _update("port", b"65536"),
    _update("port", b"-1"),
    _update("capacity", b"-1"),
    *(_update("ttl", value) for value in (b"-1.0", b"-0.5", b"nan", b"inf", b"-inf", b"1e999")),
    _list("limit", b"0"),
    _list("limit", b"501"),
    _list("limit", b"abc"),
    *(_update(field, BAD_UTF8) for field in ("worker_id", "pool", "host")),
    _gone(BAD_UTF8),
    _list("pool", BAD_UTF8),
    _list("after", BAD_UTF8),
]


class TestInvalidArgument(InvalidArgumentChecks):
    """
    Scheduler command arguments answered with C{INVALID_ARGUMENT}, on both
    scheduler listeners.
    """

    @pytest.fixture(params=INVALID_SCHEDULER, ids=[case.id for case in INVALID_SCHEDULER])
    def case(self, request: pytest.FixtureRequest) -> Invalid:
        return cast(Invalid, request.param)


def test_unanswered_invalid_keeps_connection(scheduler: Connection) -> None:
    """
    A bad value in a box that asks for no answer does not drop the connection.
    """
    scheduler.tell(lax(WorkerUpdate, answer=False), **{**UPDATE, "port": b"abc"})
    assert scheduler.open


def test_unanswered_invalid_changes_nothing(fast_path: bool) -> None:
    """
    A bad value in a box that asks for no answer changes nothing: the
    connection's workers stay (lease grace 0 would remove them on a drop).
    """
    memory = RawDispatcher(lease_grace=0.0, fast_path=fast_path)
    scheduler = memory.scheduler()
    update(scheduler, "w1")
    scheduler.tell(lax(WorkerUpdate, answer=False), **{**UPDATE, "port": b"abc"})
    assert ids(memory) == ["w1"]


def test_unanswered_valid_applied(memory: RawDispatcher, scheduler: Connection) -> None:
    """
    A valid update that asks for no answer is applied all the same.
    """
    scheduler.tell(lax(WorkerUpdate, answer=False), **UPDATE)
    assert ids(memory) == ["w9"]
