"""
How C{amp-dispatch top} draws a L{Frame}: pure functions from the frame's
records to C{rich} renderables (a heading with the connection's state, the
dispatcher's totals, a table of pools, a table of the busiest workers).
"""

from __future__ import annotations

from typing import Optional

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._probe import address
from ._top_figures import CONNECTED, Connection, Frame, in_use


def _count(value: int) -> str:
    return f"{value:,}"


def _workers(value: int) -> str:
    return f"{_count(value)} worker{'' if value == 1 else 's'}"


def _rate(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


def render_connection(connection: Connection, interval: float, interactive: bool) -> Text:
    """
    The heading: C{amp-dispatch top}, the connection's state and endpoint,
    why it failed last, and (live) how to quit.
    """
    heading = Text("amp-dispatch top", style="bold")
    heading.append("  ")
    heading.append(
        f"{connection.state} to {connection.endpoint}",
        style="green" if connection.state == CONNECTED else "bold red",
    )
    if interactive:
        heading.append(f"  every {interval:g} s, q quits", style="dim")
    if connection.error is not None:
        heading.append(f"\nlast error: {connection.error}", style="red")
    if connection.figures_age is not None:
        heading.append(f"\nfigures below are from {connection.figures_age:.0f} s ago", style="red")
    return heading


def render_pools(frame: Frame) -> Table:
    """
    A row per pool: its workers, their free slots, and the answers handed
    out since their last updates (C{in use}); then the dispatcher's totals
    (from C{Stats}), the only row with the waiting calls and the answers per
    second, which C{Stats} counts for all pools together.
    """
    table = Table(title="pools", title_justify="left", box=None, header_style="bold")
    table.add_column("pool")
    for column in ("workers", "free slots", "in use", "waiting", "answers/s"):
        table.add_column(column, justify="right")
    for pool in frame.pools:
        table.add_row(pool.pool, _count(pool.workers), _count(pool.free), _count(pool.in_use))
    stats = frame.stats
    # In use is known for all pools only when every worker was read.
    in_use_total = "" if frame.truncated else _count(sum(pool.in_use for pool in frame.pools))
    table.add_row(
        "all pools",
        _count(stats.workers),
        _count(stats.free_slots),
        in_use_total,
        _count(stats.waiting),
        _rate(frame.rate),
        style="bold",
    )
    return table


def render_busiest(frame: Frame) -> Table:
    """
    The busiest workers: the most answers handed out since their last
    update (C{in use}) first.
    """
    table = Table(
        title="busiest workers (most answers since their last update)",
        title_justify="left",
        box=None,
        header_style="bold",
    )
    table.add_column("worker")
    table.add_column("pool")
    table.add_column("address")
    for column in ("in use", "free", "capacity", "expires"):
        table.add_column(column, justify="right")
    for worker in frame.busiest:
        table.add_row(
            worker.worker_id,
            worker.pool,
            address(worker.host, worker.port),
            _count(in_use(worker)),
            _count(worker.free),
            _count(worker.capacity),
            "-" if worker.expires_in < 0 else f"{worker.expires_in:.0f}s",
        )
    return table


def render_coverage(frame: Frame) -> Text:
    """
    Which workers the pools and the busiest workers come from: all of
    them, or only the first read (the rest are in the totals only).
    """
    totals_only = "; waiting and answers/s: all pools together"
    if not frame.truncated:
        return Text(
            f"pools and busiest from all {_workers(frame.workers_read)}{totals_only}",
            style="dim",
        )
    return Text(
        f"pools and busiest from the first {_count(frame.workers_read)} of "
        f"{_workers(frame.stats.workers)} (by id; --max-workers to read more)"
        f"{totals_only}",
        style="yellow",
    )


def render(frame: Frame, interactive: bool = False) -> RenderableType:
    """
    The whole view of C{frame}; C{interactive} adds how to quit.
    """
    return Group(
        render_connection(frame.connection, frame.interval, interactive),
        Text(""),
        render_pools(frame),
        Text(""),
        render_busiest(frame),
        render_coverage(frame),
    )


__all__ = [
    "render",
    "render_busiest",
    "render_connection",
    "render_coverage",
    "render_pools",
]
