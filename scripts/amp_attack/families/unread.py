"""
C{unread}: ten million pipelined C{NextWorker} calls on one front-end
connection whose answers are never read.  A server that keeps reading while
its answers cannot be written buffers them all; one that stops reading when
its output backs up makes the sender block.

The calls name a pool with a worker of huge capacity, so each is answered
(and counted in C{Stats} C{dispatched}: the calls the server handled).  The
sender stops after 10M boxes, once its socket has been blocked for 3 s in a
row, or after 60 s; the server's RSS is measured while the connection is
still open.
"""

from __future__ import annotations

import selectors
import time

from amp_bench.wire import amp_pair

from ..conns import Conn
from ..harness import CHECK_TIMEOUT, MB, Context, Family, Outcome, assigned

POOL = "unread"
WORKER = "unread-w"
RSS_TARGET = 64 * MB
BLOCKED_SECONDS = 3.0


def next_worker_run(pool: str, count: int) -> bytes:
    """
    C{count} pipelined C{NextWorker} calls of C{pool}, tagged 0..count-1
    (as 8 hex digits: every box has the same size).
    """
    head = amp_pair(b"_command", b"NextWorker") + amp_pair(b"pool", pool.encode())
    return b"".join(head + amp_pair(b"_ask", b"%08x" % (n,)) + b"\x00\x00" for n in range(count))


class Unread(Family):
    """
    Pipelined calls whose answers are never read.
    """

    name = "unread"
    method = (
        "10M pipelined NextWorker calls on one connection that never reads "
        "(until 10M sent, 3 s blocked in a row, or 60 s)"
    )
    target = "server RSS growth < 64 MB (measured with the connection open)"

    def setup(self, ctx: Context) -> None:
        box = ctx.control.call(
            "WorkerUpdate",
            CHECK_TIMEOUT,
            worker_id=WORKER,
            host="127.0.0.1",
            port=9,
            capacity=1_000_000_000,
            pool=POOL,
        )
        if box.get(b"accepted") != b"True":
            raise RuntimeError(f"worker not registered: {box!r}")
        self.assigned0 = assigned(ctx.control, WORKER)

    def attack(self, ctx: Context) -> Outcome:
        total = ctx.scale(10_000_000, 300_000)
        limit = ctx.seconds(60.0, 10.0)
        per_run = 50_000
        run = next_worker_run(POOL, per_run)
        runs = -(-total // per_run)
        box_size = len(run) // per_run  # every box of a run has the same size
        server = ctx.server
        conn = Conn(server.frontend)
        sel = selectors.DefaultSelector()
        sel.register(conn.sock, selectors.EVENT_WRITE)
        rss0 = server.rss()
        rss_peak = rss0
        t0 = time.monotonic()
        blocked_since = None
        next_sample = t0
        stop_reason = "count"
        try:
            while conn.sent < runs * len(run):
                now = time.monotonic()
                if now - t0 > limit:
                    stop_reason = "time"
                    break
                if now >= next_sample:
                    next_sample = now + 0.5
                    rss_peak = max(rss_peak, server.rss())
                    ctx.progress(f"{conn.sent / box_size:,.0f} calls sent, {now - t0:.0f} s")
                if not conn.pending():
                    conn.queue(run)
                if conn.flush():
                    blocked_since = None
                elif blocked_since is None:
                    blocked_since = now
                elif now - blocked_since > BLOCKED_SECONDS:
                    stop_reason = f"the server stopped reading for {BLOCKED_SECONDS:g} s"
                    break
                if conn.closed:
                    stop_reason = "closed by the server"
                    break
                if conn.pending():
                    sel.select(0.1)
            time.sleep(1.0)  # the server reads what is in flight
            rss_peak = max(rss_peak, server.rss())
            sent = conn.sent // box_size
            handled = assigned(ctx.control, WORKER) - self.assigned0
        finally:
            sel.close()
            conn.close(reset=True)
        growth = rss_peak - rss0
        defects = []
        if growth >= RSS_TARGET:
            defects.append(f"RSS grew by {growth / MB:.0f} MB (target < 64 MB)")
        return Outcome(
            volume=f"{sent:,} of {total:,} calls sent",
            measured=(
                f"{handled:,} calls accepted by the server; RSS +{growth / MB:.1f} MB; "
                f"stopped: {stop_reason}"
            ),
            defects=defects,
            details={
                "calls_sent": sent,
                "calls_handled": handled,
                "stop_reason": stop_reason,
                "seconds": round(time.monotonic() - t0, 1),
                "rss_growth": growth,
            },
        )
