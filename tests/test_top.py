"""
C{amp-dispatch top}'s refreshes against the in-memory dispatcher (figures,
answers per second, bounded reads, reconnecting), its live loop (a frame
per interval, C{q} and Ctrl-C quit with the terminal restored), the
terminal's keys, and its options.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest
from rich.console import RenderableType
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from amp_dispatch.cli._top import PAGE, Refresher, TopOptions, live, once
from amp_dispatch.cli._top_figures import CONNECTED, RECONNECTING, Frame, PoolFigures
from amp_dispatch.cli._top_terminal import Keys, TerminalModes
from amp_dispatch.client import SchedulerClient
from amp_dispatch.testing import MemoryDispatcher
from tests._deferreds import failure_of, fired, result_of


@pytest.fixture
def dispatcher() -> Iterator[MemoryDispatcher]:
    dispatcher = MemoryDispatcher()
    yield dispatcher
    dispatcher.stop()


def register(dispatcher: MemoryDispatcher, *workers: Tuple[str, int, str]) -> SchedulerClient:
    """
    Register C{workers} (id, capacity, pool) with a scheduler client.
    """
    scheduler = dispatcher.scheduler_client()
    for worker_id, capacity, pool in workers:
        scheduler.update(worker_id, "10.0.0.1", 9000, capacity=capacity, pool=pool)
    dispatcher.flush()
    return scheduler


def answer(dispatcher: MemoryDispatcher, calls: int, pool: str = "default") -> None:
    """
    Make C{calls} C{NextWorker} calls, each answered.
    """
    frontend = dispatcher.frontend_client()
    answers = [frontend.next_worker(pool=pool) for _ in range(calls)]
    dispatcher.flush()
    for each in answers:
        result_of(each)


def refresher(dispatcher: MemoryDispatcher, **options: Any) -> Refresher:
    """
    A refresher of C{dispatcher} through a new scheduler client.
    """
    client_options = options.pop("client", {})
    client = dispatcher.scheduler_client(**client_options)
    return Refresher(dispatcher.clock, client, **options)


def refreshed(dispatcher: MemoryDispatcher, refresher: Refresher) -> Frame:
    done = Deferred.fromCoroutine(refresher.refresh())
    dispatcher.flush()
    return result_of(done)


def test_pools_from_workers(dispatcher: MemoryDispatcher) -> None:
    """
    A refresh gives each pool's workers, capacity and free slots.
    """
    register(dispatcher, ("a", 2, "default"), ("b", 3, "gpu"), ("c", 1, "gpu"))
    answer(dispatcher, 1, "gpu")
    frame = refreshed(dispatcher, refresher(dispatcher))
    assert list(frame.pools) == [PoolFigures("default", 1, 2, 2), PoolFigures("gpu", 2, 4, 3)]


def test_totals_from_stats(dispatcher: MemoryDispatcher) -> None:
    """
    A refresh gives the dispatcher's totals, as C{Stats} answers them.
    """
    register(dispatcher, ("a", 2, "default"))
    answer(dispatcher, 1)
    frame = refreshed(dispatcher, refresher(dispatcher))
    assert frame.stats == dispatcher.stats()


def test_busiest_from_workers(dispatcher: MemoryDispatcher) -> None:
    """
    A refresh gives the busiest of the workers, as many as asked.
    """
    register(dispatcher, ("a", 5, "default"), ("b", 1, "default"), ("c", 1, "default"))
    answer(dispatcher, 2)
    frame = refreshed(dispatcher, refresher(dispatcher, busiest=1))
    assert [worker.worker_id for worker in frame.busiest] == ["a"]


def test_rate_from_two_refreshes(dispatcher: MemoryDispatcher) -> None:
    """
    Answers per second come from C{dispatched} of two refreshes and the time
    between them; the first refresh has none.
    """
    register(dispatcher, ("a", 10, "default"))
    watching = refresher(dispatcher)
    assert refreshed(dispatcher, watching).rate is None
    answer(dispatcher, 3)
    dispatcher.clock.advance(2.0)
    assert refreshed(dispatcher, watching).rate == 1.5


def test_once_counts_rate_over_interval(dispatcher: MemoryDispatcher) -> None:
    """
    C{--once} asks C{Stats}, waits an interval, then reads its frame: the
    answers in between give the rate.
    """
    register(dispatcher, ("a", 10, "default"))
    watching = refresher(dispatcher)
    printed = Deferred.fromCoroutine(once(dispatcher.clock, watching, 2.0))
    dispatcher.flush()
    answer(dispatcher, 4)
    dispatcher.clock.advance(2.0)
    dispatcher.flush()
    assert result_of(printed).rate == 2.0


def test_reads_past_one_page(dispatcher: MemoryDispatcher) -> None:
    """
    Workers are read page after page, up to the bound.
    """
    register(dispatcher, *[(f"w{i:04}", 1, "default") for i in range(PAGE + 2)])
    frame = refreshed(dispatcher, refresher(dispatcher, max_workers=PAGE + 10))
    assert (frame.workers_read, frame.truncated) == (PAGE + 2, False)


def test_reads_at_most_max_workers(dispatcher: MemoryDispatcher) -> None:
    """
    No more than C{max_workers} workers are read; the frame says more
    follow.
    """
    register(dispatcher, ("a", 1, "default"), ("b", 1, "default"), ("c", 1, "gpu"))
    frame = refreshed(dispatcher, refresher(dispatcher, max_workers=2))
    assert (frame.workers_read, frame.truncated) == (2, True)
    assert list(frame.pools) == [PoolFigures("default", 2, 2, 2)]


def test_connected_where_told(dispatcher: MemoryDispatcher) -> None:
    """
    A refresh says the connection is up, through the endpoint C{where}
    names.
    """
    frame = refreshed(dispatcher, refresher(dispatcher, where=lambda: "tcp:b:2"))
    assert (frame.connection.state, frame.connection.endpoint) == (CONNECTED, "tcp:b:2")


def unreachable(dispatcher: MemoryDispatcher) -> Refresher:
    """
    A refresher whose client's connection was dropped: its calls fail after
    1 s (it reconnects after 10 s).
    """
    watching = refresher(dispatcher, client={"call_timeout": 1.0, "retry_policy": lambda _: 10.0})
    return watching


def test_first_refresh_failure_raises(dispatcher: MemoryDispatcher) -> None:
    """
    When the first refresh fails, its failure is raised (there is nothing
    to show).
    """
    watching = unreachable(dispatcher)
    dispatcher.drop_connections()
    done = Deferred.fromCoroutine(watching.refresh())
    dispatcher.clock.advance(1.0)
    failure_of(done, Exception)


def test_reconnecting_shows_error_and_last_figures(dispatcher: MemoryDispatcher) -> None:
    """
    A failed refresh after a good one says the client is reconnecting, why,
    and keeps the last figures, saying how old they are.
    """
    register(dispatcher, ("a", 2, "default"))
    watching = unreachable(dispatcher)
    good = refreshed(dispatcher, watching)
    dispatcher.drop_connections()
    done = Deferred.fromCoroutine(watching.refresh())
    dispatcher.clock.advance(1.0)
    frame = result_of(done)
    assert frame.connection.state == RECONNECTING
    assert frame.connection.error == (
        "no connection to memory:scheduler within 1.0 s"
        " (last error: Connection was closed cleanly: Connection done.)"
    )
    assert frame.connection.figures_age == 1.0
    assert (frame.stats, frame.pools) == (good.stats, good.pools)


def test_connected_again_after_reconnect(dispatcher: MemoryDispatcher) -> None:
    """
    Once the client has reconnected, a refresh says connected again.
    """
    watching = unreachable(dispatcher)
    refreshed(dispatcher, watching)
    dispatcher.drop_connections()
    Deferred.fromCoroutine(watching.refresh())
    dispatcher.clock.advance(1.0)
    dispatcher.clock.advance(10.0)
    dispatcher.flush()
    assert refreshed(dispatcher, watching).connection.state == CONNECTED


# -- the live loop ---------------------------------------------------------------


class FakeScreen:
    """
    A screen that keeps what it was shown, and whether it was stopped.
    """

    def __init__(self) -> None:
        self.shown: List[RenderableType] = []
        self.stopped = False

    def show(self, renderable: RenderableType) -> None:
        self.shown.append(renderable)

    def stop(self) -> None:
        self.stopped = True


class FakeModes:
    """
    Terminal modes as calls recorded: the mode read is C{"saved"}.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[str, ...]] = []

    def modes(self) -> TerminalModes:
        return TerminalModes(get=self._get, cbreak=self._cbreak, restore=self._restore)

    def _get(self, fd: int) -> str:
        self.calls.append(("get",))
        return "saved"

    def _cbreak(self, fd: int) -> None:
        self.calls.append(("cbreak",))

    def _restore(self, fd: int, mode: str) -> None:
        self.calls.append(("restore", mode))


class LiveReactor(MemoryReactorClock):
    """
    A reactor whose clock is the in-memory dispatcher's, so the loop's
    timing and the calls' move together.
    """

    def __init__(self, dispatcher: MemoryDispatcher) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self.shutdown_triggers: List[Tuple[str, str, Callable[[], Any]]] = []

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        return self._dispatcher.clock.callLater(delay, callable, *args, **kw)

    def seconds(self) -> float:
        return self._dispatcher.clock.seconds()

    def addSystemEventTrigger(  # type: ignore[override]
        self, phase: str, eventType: str, callable: Callable[[], Any]
    ) -> Any:
        trigger = (phase, eventType, callable)
        self.shutdown_triggers.append(trigger)
        return trigger

    def removeSystemEventTrigger(self, triggerID: Any) -> None:
        self.shutdown_triggers.remove(triggerID)

    def shut_down(self) -> None:
        """
        Run the triggers before shutdown, as Ctrl-C does.
        """
        for phase, event, trigger in list(self.shutdown_triggers):
            if (phase, event) == ("before", "shutdown"):
                self.shutdown_triggers.remove((phase, event, trigger))
                trigger()


@pytest.fixture
def live_run(dispatcher: MemoryDispatcher) -> Iterator[Any]:
    """
    A running live loop: C{(reactor, screen, keys reader, modes, its
    Deferred, the read end's write fd)}; keys come through a pipe.
    """
    register(dispatcher, ("a", 2, "default"))
    reactor = LiveReactor(dispatcher)
    screen = FakeScreen()
    modes = FakeModes()
    read_end, write_end = os.pipe()
    readers: List[Keys] = []

    def keys(pressed: Callable[[str], None]) -> Keys:
        readers.append(Keys(reactor, read_end, pressed, modes.modes()))
        return readers[0]

    running = Deferred.fromCoroutine(live(reactor, refresher(dispatcher), 1.0, screen, keys))
    dispatcher.flush()
    yield reactor, screen, readers[0], modes, running, write_end
    reactor.shut_down()
    os.close(read_end)
    os.close(write_end)


def test_live_frame_per_interval(dispatcher: MemoryDispatcher, live_run: Any) -> None:
    """
    The live view draws its first frame at once, then one per interval.
    """
    _, screen, _, _, _, _ = live_run
    assert len(screen.shown) == 1
    dispatcher.clock.advance(1.0)
    dispatcher.flush()
    assert len(screen.shown) == 2


def test_live_puts_terminal_in_cbreak(live_run: Any) -> None:
    """
    While the view runs, the terminal is in cbreak mode and watched for keys.
    """
    reactor, _, reader, modes, _, _ = live_run
    assert modes.calls == [("get",), ("cbreak",)]
    assert reader in reactor.getReaders()


def test_live_quits_on_q(live_run: Any) -> None:
    """
    C{q} ends the view: the terminal gets its mode back, the screen is left.
    """
    reactor, screen, reader, modes, running, write_end = live_run
    os.write(write_end, b"q")
    reader.doRead()
    assert fired(running)
    assert modes.calls[-1] == ("restore", "saved")
    assert screen.stopped
    assert reader not in reactor.getReaders()


def test_live_ignores_other_keys(live_run: Any) -> None:
    """
    Keys other than C{q} leave the view running.
    """
    _, _, reader, _, running, write_end = live_run
    os.write(write_end, b"x ")
    reader.doRead()
    assert not fired(running)


def test_live_quits_on_shutdown(live_run: Any) -> None:
    """
    Ctrl-C (the reactor shutting down) ends the view with the terminal
    restored, before the reactor stops.
    """
    reactor, screen, _, modes, running, _ = live_run
    reactor.shut_down()
    assert fired(running)
    assert modes.calls[-1] == ("restore", "saved")
    assert screen.stopped


def test_live_stops_refreshing_after_q(dispatcher: MemoryDispatcher, live_run: Any) -> None:
    """
    After C{q}, no more frames are drawn.
    """
    _, screen, reader, _, _, write_end = live_run
    os.write(write_end, b"q")
    reader.doRead()
    dispatcher.clock.advance(5.0)
    dispatcher.flush()
    assert len(screen.shown) == 1


def test_live_first_failure_leaves_terminal_alone(dispatcher: MemoryDispatcher) -> None:
    """
    When the first refresh fails, the view fails before touching the
    terminal or the screen.
    """
    watching = unreachable(dispatcher)
    dispatcher.drop_connections()
    screen = FakeScreen()
    keys: List[Any] = []
    running = Deferred.fromCoroutine(
        live(LiveReactor(dispatcher), watching, 1.0, screen, keys.append)
    )
    dispatcher.clock.advance(1.0)
    failure_of(running, Exception)
    assert (screen.shown, keys) == ([], [])


# -- keys ------------------------------------------------------------------------


def test_keys_each_given() -> None:
    """
    Every key read is given on its own.
    """
    pressed: List[str] = []
    data = [b"ab"]
    modes = FakeModes().modes()
    keys = Keys(MemoryReactorClock(), 0, pressed.append, modes, lambda fd, n: data.pop())
    keys.doRead()
    assert pressed == ["a", "b"]


def test_keys_stop_restores_once() -> None:
    """
    Stopping twice restores the terminal's mode once.
    """
    modes = FakeModes()
    keys = Keys(MemoryReactorClock(), 0, lambda key: None, modes.modes())
    keys.start()
    keys.stop()
    keys.stop()
    assert modes.calls == [("get",), ("cbreak",), ("restore", "saved")]


def test_keys_end_of_input_stops_reading() -> None:
    """
    At the end of input the terminal is no longer watched.
    """
    reactor = MemoryReactorClock()
    keys = Keys(reactor, 0, lambda key: None, FakeModes().modes(), lambda fd, n: b"")
    keys.start()
    keys.doRead()
    assert keys not in reactor.getReaders()


# -- options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0"], "--interval: must be a finite number > 0, not '0'"),
        (["--interval", "x"], "--interval: must be a number, not 'x'"),
        (["--max-workers", "0"], "--max-workers: must be at least 1, not '0'"),
        (
            ["--max-workers", "100001"],
            "--max-workers: must be at most 100000, not '100001'",
        ),
        (["--busiest", "x"], "--busiest: "),
        (["--scheduler", "garbage"], "--scheduler: Unknown endpoint type: 'garbage'"),
        (["--scheduler", ","], "--scheduler: give at least one endpoint"),
    ],
)
def test_option_errors_name_the_option(argv: List[str], message: str) -> None:
    """
    A refused value names its option.
    """
    with pytest.raises(usage.UsageError) as caught:
        TopOptions().parseOptions(argv)
    assert str(caught.value).startswith(message)


def test_defaults() -> None:
    """
    By default it watches the local scheduler listener every second.
    """
    options = TopOptions()
    options.parseOptions([])
    chosen: Optional[Any] = (options["scheduler"], options["interval"], options["once"])
    assert chosen == ("tcp:127.0.0.1:8751", 1.0, 0)
