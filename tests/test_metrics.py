"""
L{amp_dispatch.admin}: the metrics the listeners' hook counts and the
collector shows (read from a L{MemoryStore} on a L{Clock}), and the admin
site's C{/metrics}, C{/healthz} and C{/readyz} resources.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pytest
from prometheus_client import generate_latest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from amp_dispatch.admin import ListenerCounts, Metrics, admin_site
from amp_dispatch.admin._site import (
    ADMIN_MAX_CONNECTIONS,
    ADMIN_MAX_LIFETIME,
    ADMIN_READS_PER_SECOND,
    _AdminRequest,
)
from amp_dispatch.protocol._hooks import ConnectionInfo
from amp_dispatch.server._config import OTHER_POOLS, DispatcherConfig
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import StoreStats, WorkerReport
from amp_dispatch.store._memory import MemoryStore
from tests._scrape import Samples, parse_samples, sample
from tests._stores import LaterStore


def samples(metrics: Metrics) -> Samples:
    """
    The exposition of C{metrics}, parsed: every sample by name and labels.
    """
    return parse_samples(generate_latest(metrics.registry).decode("utf-8"))


def value(metrics: Metrics, name: str, **labels: str) -> Optional[float]:
    return sample(samples(metrics), name, **labels)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return open_memory_store(clock, DispatcherConfig(lease_grace=0.0))


def add(store: MemoryStore, worker_id: str, capacity: int, pool: str = "default") -> None:
    store.update(WorkerReport(worker_id, "h", 9000, capacity, pool=pool))


_FRONT = ConnectionInfo("frontend")


def test_commands_counted_by_outcome(clock: Clock, store: MemoryStore) -> None:
    """
    The hook's counts show as C{amp_dispatch_commands_total}, by command and
    outcome (spaces as underscores), several boxes of a read at once.
    """
    metrics = Metrics(clock, store)
    metrics(b"NextWorker", "answered", _FRONT, 16)
    metrics(b"NextWorker", "answered", _FRONT, 1)
    metrics(b"NextWorker", "no worker", _FRONT, 1)
    metrics.refresh()
    total = "amp_dispatch_commands_total"
    assert value(metrics, total, command="NextWorker", outcome="answered") == 17
    assert value(metrics, total, command="NextWorker", outcome="no_worker") == 1


def test_counts_need_no_reading_of_the_store(clock: Clock, store: MemoryStore) -> None:
    """
    The hook's counts show in the collector as they are, without a reading
    of the store; the store's figures only once read.
    """
    metrics = Metrics(clock, store)
    add(store, "a", 1)
    metrics(b"Stats", "answered", _FRONT, 1)
    assert value(metrics, "amp_dispatch_commands_total", command="Stats", outcome="answered") == 1
    assert value(metrics, "amp_dispatch_workers") is None
    metrics.refresh()
    assert value(metrics, "amp_dispatch_workers") == 1


def test_rejected_by_listener_and_kind(clock: Clock, store: MemoryStore) -> None:
    """
    Rejected inputs are counted by listener and kind.
    """
    metrics = Metrics(clock, store)
    metrics.rejected("frontend", "bad framing")
    metrics.rejected("frontend", "bad framing")
    metrics.rejected("scheduler", "invalid argument")
    metrics.refresh()
    rejected = "amp_dispatch_rejected_inputs_total"
    assert value(metrics, rejected, listener="frontend", reason="bad_framing") == 2
    assert value(metrics, rejected, listener="scheduler", reason="invalid_argument") == 1


def test_waits_histogram(clock: Clock, store: MemoryStore) -> None:
    """
    Each wait is observed in the waiting-time histogram.
    """
    metrics = Metrics(clock, store)
    metrics.waited(0.003)
    metrics.waited(2.0)
    name = "amp_dispatch_next_worker_wait_seconds"
    assert value(metrics, f"{name}_count") == 2
    assert value(metrics, f"{name}_bucket", le="0.005") == 1
    assert value(metrics, f"{name}_bucket", le="2.5") == 2


def test_pools_and_totals(clock: Clock, store: MemoryStore) -> None:
    """
    Each pool's workers, free slots and waiting calls, and the store's
    totals, as of the refresh.
    """
    add(store, "a", 3)
    add(store, "b", 2, pool="gpu")
    store.take("gpu")
    store.next_worker("cpu", timeout=10.0)
    metrics = Metrics(clock, store)
    metrics.refresh()
    assert value(metrics, "amp_dispatch_pool_workers", pool="default") == 1
    assert value(metrics, "amp_dispatch_pool_free_slots", pool="gpu") == 1
    assert value(metrics, "amp_dispatch_pool_waiting_calls", pool="cpu") == 1
    assert value(metrics, "amp_dispatch_workers") == 2
    assert value(metrics, "amp_dispatch_free_slots") == 4
    assert value(metrics, "amp_dispatch_waiting_calls") == 1
    assert value(metrics, "amp_dispatch_dispatched_total") == 1
    assert value(metrics, "amp_dispatch_store_up") == 1


def test_pool_labels_capped(clock: Clock, store: MemoryStore) -> None:
    """
    Past the cap, pools are added up under one label; the pools labelled
    first keep their label.
    """
    add(store, "a", 1, pool="p1")
    add(store, "b", 2, pool="p2")
    metrics = Metrics(clock, store, max_pool_labels=2)
    metrics.refresh()
    add(store, "c", 4, pool="p3")
    add(store, "d", 8, pool="p4")
    clock.advance(1.0)
    metrics.refresh()
    free = "amp_dispatch_pool_free_slots"
    assert value(metrics, free, pool="p1") == 1
    assert value(metrics, free, pool="p2") == 2
    assert value(metrics, free, pool=OTHER_POOLS) == 12
    assert value(metrics, free, pool="p3") is None


def test_labelled_pool_gone(clock: Clock, store: MemoryStore) -> None:
    """
    A labelled pool with no worker left is not shown.
    """
    add(store, "a", 1, pool="p1")
    metrics = Metrics(clock, store)
    metrics.refresh()
    store.gone("a")
    clock.advance(1.0)
    metrics.refresh()
    assert value(metrics, "amp_dispatch_pool_workers", pool="p1") is None
    assert value(metrics, "amp_dispatch_workers_removed_total", reason="gone") == 1


def test_refresh_at_most_once_a_second(clock: Clock, store: MemoryStore) -> None:
    """
    Scrapes coming faster than once a second share the last reading.
    """
    metrics = Metrics(clock, store)
    metrics.refresh()
    add(store, "a", 1)
    clock.advance(0.5)
    metrics.refresh()
    assert value(metrics, "amp_dispatch_workers") == 0
    clock.advance(0.5)
    metrics.refresh()
    assert value(metrics, "amp_dispatch_workers") == 1


def test_refresh_waits_for_a_store_answering_later(clock: Clock, store: MemoryStore) -> None:
    """
    A store that answers later is read once however many scrapes come
    meanwhile.
    """
    held: List[Deferred[Any]] = []

    class Held(LaterStore):
        def stats(self) -> Any:
            later: Deferred[Any] = Deferred()
            held.append(later)
            return super().stats().addCallback(lambda stats: later.addCallback(lambda _: stats))

    add(store, "a", 1)
    metrics = Metrics(clock, Held(store))
    first, second = metrics.refresh(), metrics.refresh()
    assert len(held) == 1
    held[0].callback(None)
    assert first.result is second.result
    assert value(metrics, "amp_dispatch_workers") == 1


def test_store_down(clock: Clock, store: MemoryStore) -> None:
    """
    A store that does not answer shows down, without its figures.
    """

    class Down(LaterStore):
        def available(self) -> bool:
            return False

    add(store, "a", 1)
    metrics = Metrics(clock, Down(store))
    metrics.refresh()
    assert value(metrics, "amp_dispatch_store_up") == 0
    assert value(metrics, "amp_dispatch_workers") is None


def test_store_failing(clock: Clock, store: MemoryStore) -> None:
    """
    A store call that fails leaves the figures out; the refresh still fires.
    """

    class Failing(LaterStore):
        def stats(self) -> Any:
            return fail(RuntimeError("no"))

    metrics = Metrics(clock, Failing(store))
    snapshot = metrics.refresh()
    assert snapshot.called
    assert value(metrics, "amp_dispatch_store_up") == 0


def test_connections(clock: Clock, store: MemoryStore) -> None:
    """
    Each listener's open, refused and evicted connections.
    """
    metrics = Metrics(
        clock,
        store,
        lambda: [ListenerCounts("frontend", 3, 2, 1), ListenerCounts("scheduler", 1, 0, 0)],
    )
    metrics.refresh()
    assert value(metrics, "amp_dispatch_connections", listener="frontend") == 3
    assert value(metrics, "amp_dispatch_connections_refused_total", listener="frontend") == 2
    assert value(metrics, "amp_dispatch_connections_evicted_total", listener="frontend") == 1
    assert value(metrics, "amp_dispatch_connections", listener="scheduler") == 1


def test_process_and_info(clock: Clock, store: MemoryStore) -> None:
    """
    Process metrics and the versions are exported.
    """
    metrics = Metrics(clock, store)
    found = samples(metrics)
    assert any(name == "process_cpu_seconds_total" for name, _ in found)
    assert any(name == "amp_dispatch_info" for name, _ in found)


# -- the site -----------------------------------------------------------------


def render(
    site: Any, path: bytes, method: bytes = b"GET", accept: Optional[bytes] = None
) -> Tuple[int, bytes, Optional[bytes]]:
    """
    Ask the admin site for C{path}: the status, the body and its type.
    """
    request = DummyRequest(path.strip(b"/").split(b"/"))
    request.method = method
    if accept is not None:
        request.requestHeaders.setRawHeaders(b"accept", [accept])
    resource = site.wrappedFactory.resource
    while request.postpath and not getattr(resource, "isLeaf", False):
        resource = resource.getChildWithDefault(request.postpath[0], request)
        request.prepath.append(request.postpath.pop(0))
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    content_type = request.responseHeaders.getRawHeaders(b"content-type", [None])[0]
    return request.responseCode or 200, b"".join(request.written), content_type


def site_of(clock: Clock, store: Any, not_ready: Any = lambda: None) -> Any:
    return admin_site(clock, Metrics(clock, store), not_ready)


def test_healthz(clock: Clock, store: MemoryStore) -> None:
    """
    C{/healthz} answers 200 while the process serves.
    """
    assert render(site_of(clock, store), b"/healthz")[:2] == (200, b"ok\n")


def test_readyz(clock: Clock, store: MemoryStore) -> None:
    """
    C{/readyz} answers 200 when ready, 503 with the reason when not.
    """
    reason: List[Optional[str]] = [None]
    site = site_of(clock, store, lambda: reason[0])
    assert render(site, b"/readyz")[:2] == (200, b"ready\n")
    reason[0] = "the store does not answer"
    assert render(site, b"/readyz")[:2] == (503, b"not ready: the store does not answer\n")


def test_deeper_paths_not_found(clock: Clock, store: MemoryStore) -> None:
    """
    A path below an admin resource is not found.
    """
    site = site_of(clock, store)
    assert render(site, b"/readyz/x")[0] == 404
    assert render(site, b"/metrics/x")[0] == 404


def test_head(clock: Clock, store: MemoryStore) -> None:
    """
    C{HEAD} is answered as C{GET} is.
    """
    assert render(site_of(clock, store), b"/metrics", b"HEAD")[0] == 200


def test_metrics_refreshed_before_exposed(clock: Clock, store: MemoryStore) -> None:
    """
    C{/metrics} reads the figures, then exposes them in Prometheus's text
    format.
    """
    site = site_of(clock, store)
    add(store, "a", 5)
    status, body, content_type = render(site, b"/metrics")
    assert status == 200
    assert content_type is not None and content_type.startswith(b"text/plain; version=0.0.4")
    assert sample(parse_samples(body.decode()), "amp_dispatch_free_slots") == 5


def test_metrics_openmetrics(clock: Clock, store: MemoryStore) -> None:
    """
    A scraper that accepts OpenMetrics gets it.
    """
    _, body, content_type = render(
        site_of(clock, store), b"/metrics", accept=b"application/openmetrics-text"
    )
    assert content_type is not None and content_type.startswith(b"application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_exposition_made_once_per_reading(clock: Clock, store: MemoryStore) -> None:
    """
    Scrapes within a second share one exposition: the same bytes, even if
    the hook counted meanwhile; the next second's scrape shows the counts.
    """
    metrics = Metrics(clock, store)
    site = admin_site(clock, metrics, lambda: None)
    first = render(site, b"/metrics")[1]
    metrics(b"Stats", "answered", _FRONT, 1)
    assert render(site, b"/metrics")[1] is first
    clock.advance(1.0)
    later = parse_samples(render(site, b"/metrics")[1].decode())
    assert sample(later, "amp_dispatch_commands_total", command="Stats", outcome="answered") == 1


def test_metrics_client_gone(clock: Clock, store: MemoryStore) -> None:
    """
    A scrape whose client left while the store was read writes nothing.
    """
    stats: List[Deferred[Any]] = []

    class Held(LaterStore):
        def stats(self) -> Any:
            later: Deferred[Any] = Deferred()
            stats.append(later)
            return later

    site = site_of(clock, Held(store))
    request = DummyRequest([b"metrics"])
    resource = site.wrappedFactory.resource.getChildWithDefault(b"metrics", request)
    request.postpath = []
    assert resource.render(request) is NOT_DONE_YET
    request.processingFailed(Exception("gone"))  # the client left
    written = list(request.written)
    stats[0].callback(StoreStats(0, 0, 0, 0))
    assert request.written == written


def connect(factory: Any) -> Tuple[Any, StringTransport]:
    transport = StringTransport()
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    return protocol, transport


def test_admin_connections_capped(clock: Clock, store: MemoryStore) -> None:
    """
    At most L{ADMIN_MAX_CONNECTIONS} admin connections are open at once: a
    new one closes the oldest.
    """
    factory = site_of(clock, store)
    opened = [connect(factory) for _ in range(ADMIN_MAX_CONNECTIONS)]
    assert not any(transport.disconnecting for _, transport in opened)
    connect(factory)
    assert [transport.disconnecting for _, transport in opened] == [True] + [False] * (
        ADMIN_MAX_CONNECTIONS - 1
    )
    connect(factory)  # the oldest of the rest, not the same one again
    assert opened[1][1].disconnecting


def test_admin_lifetime(clock: Clock, store: MemoryStore) -> None:
    """
    An admin connection is closed after L{ADMIN_MAX_LIFETIME} seconds, however
    it trickles bytes, on the reactor given.
    """
    protocol, transport = connect(site_of(clock, store))
    for _ in range(int(ADMIN_MAX_LIFETIME) - 1):
        protocol.dataReceived(b"G")
        clock.advance(1.0)
    assert not transport.disconnecting
    clock.advance(1.0)
    assert transport.disconnecting


def test_admin_reads_budget(clock: Clock, store: MemoryStore) -> None:
    """
    Past L{ADMIN_READS_PER_SECOND} reads in a second, a read is held and its
    connection not read until the next second; then it is answered.
    """
    factory = site_of(clock, store)
    (one, first), (two, _) = connect(factory), connect(factory)
    for _ in range(ADMIN_READS_PER_SECOND // 2):
        one.dataReceived(b"x")
        two.dataReceived(b"x")
    request = b"GET /healthz HTTP/1.0\r\n\r\n"
    three, third = connect(factory)
    three.dataReceived(request)
    assert (first.producerState, third.producerState) == ("producing", "paused")
    assert third.value() == b""
    clock.advance(1.0)
    assert third.producerState == "producing"
    assert third.value().startswith(b"HTTP/1.0 200 OK")


def test_admin_body_not_kept() -> None:
    """
    A request's body is read and thrown away, however long.
    """
    request = _AdminRequest(DummyChannel())
    request.gotLength(10**9)
    request.handleContentChunk(b"x" * 100_000)
    content: Any = request.content
    assert content.tell() == 0
    assert content.read() == b""


def test_outcomes_shown_from_the_start(clock: Clock, store: MemoryStore) -> None:
    """
    Every outcome of NextWorker, WorkerUpdate and WorkerGone, and every
    removal reason, shows at 0 before it first happens (a rate over it then
    sees its first occurrence).
    """
    metrics = Metrics(clock, store)
    metrics.refresh()
    total = "amp_dispatch_commands_total"
    assert value(metrics, total, command="NextWorker", outcome="timed_out") == 0
    assert value(metrics, total, command="WorkerUpdate", outcome="stale") == 0
    assert value(metrics, total, command="WorkerGone", outcome="unknown") == 0
    assert value(metrics, "amp_dispatch_workers_removed_total", reason="lease_expired") == 0


def test_pool_labels_given_back(clock: Clock, store: MemoryStore) -> None:
    """
    A pool that no longer exists gives its label to a new pool.
    """
    add(store, "a", 1, pool="p1")
    add(store, "b", 2, pool="p2")
    metrics = Metrics(clock, store, max_pool_labels=2)
    metrics.refresh()
    store.gone("a")
    add(store, "c", 4, pool="p3")
    clock.advance(1.0)
    metrics.refresh()
    free = "amp_dispatch_pool_free_slots"
    assert value(metrics, free, pool="p3") == 4
    assert value(metrics, free, pool="p2") == 2
    assert value(metrics, free, pool=OTHER_POOLS) == 0


def test_pool_named_as_the_overflow(clock: Clock, store: MemoryStore) -> None:
    """
    A pool named as the overflow series is counted in it, never shown twice
    (its series would repeat, and the scrape would be refused).
    """
    add(store, "a", 1, pool=OTHER_POOLS)
    add(store, "b", 2, pool="p1")
    metrics = Metrics(clock, store, max_pool_labels=1)
    metrics.refresh()
    exposition = generate_latest(metrics.registry).decode()
    assert exposition.count('amp_dispatch_pool_workers{pool="(other)"}') == 1
    assert value(metrics, "amp_dispatch_pool_free_slots", pool=OTHER_POOLS) == 1
    assert value(metrics, "amp_dispatch_pool_free_slots", pool="p1") == 2
