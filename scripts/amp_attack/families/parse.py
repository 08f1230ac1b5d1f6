"""
C{slow-parse} and C{big-box}: one box that never ends, sent to the front
end, so that the server's box size limit (C{--max-box-bytes}, expected
16,384 by default) is what stops it.

- C{slow-parse}: 12 MB of 1-byte keys with 1-byte values, in 2 KB writes
  with TCP_NODELAY and a pause of 0.2 ms between them, so that the server
  reads them one at a time: a parser that starts again from the beginning
  of the box on every read spends quadratic CPU.
- C{big-box}: 48 MB of pairs with 64 KB values, as fast as the socket takes
  them: a server that buffers the whole box grows by as much.

Each measures the server's CPU (C{/proc/PID/stat}) over the attack and for
one second after the connection is gone (it must be idle then), its RSS
while the connection is still open, and whether and after how many bytes the
server closed the connection.
"""

from __future__ import annotations

import selectors
import time
from typing import Any, Dict, List

from ..conns import Conn, wait_closed
from ..harness import MB, Context, Family, Outcome
from ..wire import amp_pair

#: Slack beyond the limit for bytes in flight when the server closes
#: (written by us, not yet read by the server when it closed).
SLOW_SLACK = 256 * 1024
#: For big-box, written as fast as possible: loopback socket buffers hold
#: megabytes.
BIG_SLACK = 16 * MB
CPU_TARGET = 1.0
IDLE_TARGET = 0.1
RSS_TARGET = 32 * MB


def _send_box(
    ctx: Context,
    payload: bytes,
    write: int,
    pause: float,
    limit: float,
    label: str,
) -> Dict[str, Any]:
    """
    Send C{payload} in writes of C{write} bytes, C{pause} seconds apart,
    until the server closes the connection, all is sent or C{limit} seconds
    pass; then keep the connection open one second more and measure.
    """
    server = ctx.server
    conn = Conn(server.frontend)
    sel = selectors.DefaultSelector()
    sel.register(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    cpu0 = server.cpu_seconds()
    rss0 = server.rss()
    rss_peak = rss0
    t0 = time.monotonic()
    at = 0
    next_sample = t0
    closed_at_bytes = None
    try:
        while at < len(payload) and not conn.closed:
            now = time.monotonic()
            if now - t0 > limit:
                break
            if now >= next_sample:
                next_sample = now + 0.25
                rss_peak = max(rss_peak, server.rss())
                ctx.progress(f"{label}: {at / MB:.1f} MB sent, {now - t0:.0f} s")
            events = sel.select(0.05)
            for _, mask in events:
                if mask & selectors.EVENT_READ:
                    conn.read()
            if conn.closed:
                break
            if not any(mask & selectors.EVENT_WRITE for _, mask in events):
                continue
            conn.queue(payload[at : at + write])
            at += min(write, len(payload) - at)
            conn.flush()
            if conn.pending():
                # The socket is full: take back what it did not take.
                at -= conn.pending()
                conn.discard_output()
            if pause:
                time.sleep(pause)
        send_seconds = time.monotonic() - t0
        if conn.closed:
            closed_at_bytes = conn.sent
        else:
            # The last writes may still be on their way to being read.
            wait_closed(conn, 1.0)
            if conn.closed:
                closed_at_bytes = conn.sent
        rss_peak = max(rss_peak, server.rss())
        cpu_attack = server.cpu_seconds() - cpu0
    finally:
        sel.close()
        conn.close(reset=True)
    time.sleep(0.05)
    idle = server.idle_cpu(1.0)
    return {
        "bytes_sent": conn.sent,
        "send_seconds": round(send_seconds, 2),
        "closed_by_server": closed_at_bytes is not None,
        "closed_at_bytes": closed_at_bytes,
        "close_reason": conn.reason,
        "server_cpu_s": round(cpu_attack, 3),
        "server_cpu_after_s": round(idle, 3),
        "rss_growth": rss_peak - rss0,
    }


def _judge(
    result: Dict[str, Any], limit: int, slack: int, total: int, rss_target: int
) -> List[str]:
    defects: List[str] = []
    if not result["closed_by_server"]:
        defects.append(
            f"connection not closed by the server after {result['bytes_sent'] / MB:.1f} MB "
            f"of one box (limit {limit:,} bytes)"
        )
    elif result["closed_at_bytes"] > limit + slack:
        defects.append(
            f"closed only after {result['closed_at_bytes']:,} bytes (limit {limit:,} + "
            f"{slack:,} in flight)"
        )
    cpu = result["server_cpu_s"] + result["server_cpu_after_s"]
    if cpu >= CPU_TARGET:
        defects.append(f"server CPU {cpu:.2f} s (target < {CPU_TARGET:g} s)")
    if result["server_cpu_after_s"] >= IDLE_TARGET:
        defects.append(
            f"server still busy after the connection closed: "
            f"{result['server_cpu_after_s']:.2f} s CPU in the next second"
        )
    if result["rss_growth"] >= rss_target:
        defects.append(f"RSS grew by {result['rss_growth'] / MB:.1f} MB")
    return defects


def _measured(result: Dict[str, Any]) -> str:
    closed = (
        f"closed after {result['closed_at_bytes']:,} B"
        if result["closed_by_server"]
        else "not closed"
    )
    return (
        f"{closed}; CPU {result['server_cpu_s']:.2f} s + "
        f"{result['server_cpu_after_s']:.2f} s after; RSS +{result['rss_growth'] / MB:.1f} MB"
    )


class SlowParse(Family):
    """
    An endless box of tiny pairs, read a small write at a time.
    """

    name = "slow-parse"
    method = (
        "one box that never ends: 12 MB of 1-byte key/value pairs in 2 KB writes "
        "(TCP_NODELAY, 0.2 ms apart, at most 20 s)"
    )
    target = "< 1 s server CPU in all, idle after; closed once past the box size limit (16,384 B)"

    def attack(self, ctx: Context) -> Outcome:
        total = ctx.scale(12 * MB, 2 * MB)
        limit_bytes = ctx.defaults["max-box-bytes"]
        pair = amp_pair(b"k", b"v")
        payload = pair * (total // len(pair))
        result = _send_box(ctx, payload, 2048, 0.0002, ctx.seconds(20.0, 5.0), self.name)
        return Outcome(
            volume=f"{result['bytes_sent'] / MB:.1f} of {total / MB:.0f} MB",
            measured=_measured(result),
            defects=_judge(result, limit_bytes, SLOW_SLACK, total, RSS_TARGET),
            details=result,
        )


class BigBox(Family):
    """
    An endless box of 64 KB values, as fast as it goes.
    """

    name = "big-box"
    method = (
        "one box that never ends: 48 MB of pairs with 64 KB values, as fast as accepted (≤ 30 s)"
    )
    target = "closed at the box size limit, RSS growth < 32 MB, < 1 s server CPU"

    def attack(self, ctx: Context) -> Outcome:
        total = ctx.scale(48 * MB, 8 * MB)
        limit_bytes = ctx.defaults["max-box-bytes"]
        pair = amp_pair(b"k", b"x" * 65535)
        payload = pair * -(-total // len(pair))
        result = _send_box(ctx, payload, 1 << 20, 0.0, ctx.seconds(30.0, 8.0), self.name)
        return Outcome(
            volume=f"{result['bytes_sent'] / MB:.1f} of {len(payload) / MB:.0f} MB",
            measured=_measured(result),
            defects=_judge(result, limit_bytes, BIG_SLACK, total, RSS_TARGET),
            details=result,
        )
