"""
C{amp-dispatch top}'s frames, rendered to a captured console from given
figures: the pools, the totals, the busiest workers, how many workers they
come from, the connection's state; and how the figures are worked out from
the dispatcher's answers.
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from amp_dispatch.cli._top_figures import (
    CONNECTED,
    RECONNECTING,
    Connection,
    Frame,
    PoolFigures,
    answers_per_second,
    busiest,
    pool_figures,
)
from amp_dispatch.cli._top_view import render
from amp_dispatch.client import DispatcherStats, RegisteredWorker
from tests._text import words

STATS = DispatcherStats(workers=3, free_slots=7, waiting=4, dispatched=12, protocol=1)
HERE = Connection(CONNECTED, "tcp:127.0.0.1:8751")


def worker(
    worker_id: str, capacity: int, free: int, pool: str = "default", host: str = "10.0.0.1"
) -> RegisteredWorker:
    return RegisteredWorker(worker_id, host, 9000, pool, capacity, free, -1.0)


def frame(**fields: Any) -> Frame:
    """
    A frame of C{STATS}, connected, with C{fields} changed.
    """
    values: dict[str, Any] = {"connection": HERE, "stats": STATS}
    values.update(fields)
    return Frame(**values)


def shown(renderable: Any, interactive: bool = False) -> str:
    """
    The text of C{renderable} (a L{Frame} is rendered first) on a console
    120 columns wide, without colours.
    """
    if isinstance(renderable, Frame):
        renderable = render(renderable, interactive)
    captured = io.StringIO()
    console = Console(file=captured, width=120, force_terminal=False, color_system=None)
    console.print(renderable)
    return captured.getvalue()


def test_a_row_per_pool() -> None:
    """
    Each pool has a row: its workers, their free slots, the answers in use.
    """
    pools = [PoolFigures("default", 2, 5, 4), PoolFigures("gpu", 1, 4, 1)]
    text = shown(frame(pools=pools))
    assert words(text, "default") == ["default", "2", "4", "1"]
    assert words(text, "gpu") == ["gpu", "1", "1", "3"]


def test_totals_row_from_stats() -> None:
    """
    The all-pools row has the dispatcher's totals, waiting calls and
    answers per second.
    """
    text = shown(frame(pools=[PoolFigures("default", 3, 9, 7)], rate=2.5))
    assert words(text, "all pools") == ["all", "pools", "3", "7", "2", "4", "2.5"]


def test_rate_not_known_yet() -> None:
    """
    Before two answers came, the answers per second show as C{-}.
    """
    assert words(shown(frame()), "all pools") == ["all", "pools", "3", "7", "0", "4", "-"]


def test_large_figures_grouped() -> None:
    """
    Figures are shown with thousands separators.
    """
    stats = DispatcherStats(workers=100_000, free_slots=1, waiting=0, dispatched=0, protocol=1)
    assert "from the first 2,000 of 100,000 workers" in shown(
        frame(stats=stats, workers_read=2000, truncated=True)
    )


def test_busiest_workers_in_order() -> None:
    """
    The busiest workers are listed as given, with their answers in use,
    free slots and capacity.
    """
    text = shown(frame(busiest=[worker("w2", 5, 1), worker("w1", 3, 2)]))
    assert words(text, "w2") == ["w2", "default", "10.0.0.1:9000", "4", "1", "5", "-"]
    assert text.index("w2") < text.index("w1 ")


def test_busiest_ipv6_address() -> None:
    """
    An IPv6 worker's address is shown in brackets.
    """
    assert "[::1]:9000" in shown(frame(busiest=[worker("w1", 1, 0, host="::1")]))


def test_all_workers_read() -> None:
    """
    When every worker was read, the view says the pools come from all.
    """
    assert "pools and busiest from all 3 workers" in shown(frame(workers_read=3))


def test_truncated_says_how_many_were_read() -> None:
    """
    When more workers are registered than were read, the view says how many
    of how many the pools come from.
    """
    text = shown(frame(workers_read=2, truncated=True))
    assert "from the first 2 of 3 workers" in text


def test_truncated_leaves_total_in_use_out() -> None:
    """
    The answers in use of all pools are added up only when every worker was
    read.
    """
    pools = [PoolFigures("default", 2, 5, 4)]
    complete = words(shown(frame(pools=pools, workers_read=2)), "all pools")
    assert complete == ["all", "pools", "3", "7", "1", "4", "-"]
    truncated = words(shown(frame(pools=pools, workers_read=2, truncated=True)), "all pools")
    assert truncated == ["all", "pools", "3", "7", "4", "-"]


def test_connected_endpoint() -> None:
    """
    The heading says where the view is connected.
    """
    assert "connected to tcp:127.0.0.1:8751" in shown(frame())


def test_reconnecting_error_and_age() -> None:
    """
    While reconnecting, the heading says so, why the last refresh failed and
    how old the figures are.
    """
    connection = Connection(RECONNECTING, "tcp:a:1, tcp:b:2", "cannot connect: refused", 12.4)
    text = shown(frame(connection=connection))
    assert "reconnecting to tcp:a:1, tcp:b:2" in text
    assert "last error: cannot connect: refused" in text
    assert "figures below are from 12 s ago" in text


def test_interactive_says_how_to_quit() -> None:
    """
    The live view says how to quit and how often it refreshes; a printed
    frame does not.
    """
    assert "every 2 s, q quits" in shown(frame(interval=2.0), interactive=True)
    assert "q quits" not in shown(frame(interval=2.0))


def test_pool_figures_added_up() -> None:
    """
    A pool's figures add up its workers', pools in name order.
    """
    workers = [worker("a", 3, 1, "gpu"), worker("b", 2, 2), worker("c", 4, 1, "gpu")]
    assert pool_figures(workers) == [PoolFigures("default", 1, 2, 2), PoolFigures("gpu", 2, 7, 2)]


def test_busiest_most_in_use_first() -> None:
    """
    The busiest workers have the most answers handed out since their last
    update.
    """
    workers = [worker("a", 10, 9), worker("b", 3, 0), worker("c", 5, 3)]
    assert [each.worker_id for each in busiest(workers, 2)] == ["b", "c"]


def test_busiest_then_least_share_free() -> None:
    """
    Among workers with as many answers in use, the one with the smallest
    share of its capacity free comes first, a full one before any.
    """
    workers = [worker("a", 10, 9), worker("b", 2, 1), worker("c", 0, 0), worker("d", 1, 1)]
    assert [each.worker_id for each in busiest(workers, 4)] == ["b", "a", "c", "d"]


def test_answers_per_second() -> None:
    """
    Answers per second come from the difference of C{dispatched} between
    two answers.
    """
    later = DispatcherStats(workers=3, free_slots=7, waiting=4, dispatched=42, protocol=1)
    assert answers_per_second(STATS, 10.0, later, 12.0) == 15.0


def test_answers_per_second_after_restart() -> None:
    """
    A counter that went back (the dispatcher restarted) gives no rate.
    """
    restarted = DispatcherStats(workers=0, free_slots=0, waiting=0, dispatched=1, protocol=1)
    assert answers_per_second(STATS, 10.0, restarted, 11.0) is None
