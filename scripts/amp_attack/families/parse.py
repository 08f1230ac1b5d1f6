"""
C{slow-parse}, C{slow-parse-1mb} and C{big-box}: boxes that never end, sent
to the front end, so that the server's box size limit (C{--max-box-bytes},
16,384 by default) is what stops each.

- C{slow-parse}: one connection tries to send 12 MB of 1-byte keys with
  1-byte values, in 2 KB writes with TCP_NODELAY and a pause of 0.2 ms
  between them, so that the server reads them one at a time: a parser that
  starts again from the beginning of the box on every read spends quadratic
  CPU, and a server without a box limit keeps on reading.
- C{slow-parse-1mb}: with the box limit at its highest (1 MiB), boxes of
  1 MB of such pairs, six sent in 2 KB writes and six in 64 KB writes: the
  server's CPU must not depend on the size of the reads (each byte is
  looked at a bounded number of times).
- C{big-box}: 48 MB of pairs with 64 KB values, as fast as the socket takes
  them, reconnecting after each close: a server that buffers a whole box
  grows by as much.

Each measures the server's CPU (C{/proc/PID/stat}) over the attack and for
one second after the last connection is gone (it must be idle then: the
clean client's own load, measured for a second before the attack, is taken
off), its RSS while connections are open, and after how many bytes the
server closed each connection.
"""

from __future__ import annotations

import selectors
import time
from typing import Any, Dict, List, Optional, Sequence

from ..conns import Conn, wait_closed
from ..harness import MB, Context, Family, Outcome
from ..report import size_text
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
#: The highest box limit C{serve} takes.
MAX_BOX_LIMIT = 1_048_576
#: slow-parse-1mb: the CPU of small reads over that of large ones, at most.
READ_SIZE_RATIO = 2.0


def _send_one(
    ctx: Context, payload: bytes, write: int, pause: float, limit: float, label: str
) -> Dict[str, Any]:
    """
    Send C{payload} on a new connection in writes of C{write} bytes,
    C{pause} seconds apart, until the server closes it, all is sent or
    C{limit} seconds pass (then wait a second for the close).
    """
    server = ctx.server
    conn = Conn(server.frontend)
    sel = selectors.DefaultSelector()
    sel.register(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    rss_peak = server.rss()
    t0 = time.monotonic()
    at = 0
    next_sample = t0
    try:
        while at < len(payload) and not conn.closed:
            now = time.monotonic()
            if now - t0 > limit:
                break
            if now >= next_sample:
                next_sample = now + 0.25
                rss_peak = max(rss_peak, server.rss())
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
        if not conn.closed:
            # The last writes may still be on their way to being read.
            wait_closed(conn, 1.0)
        rss_peak = max(rss_peak, server.rss())
        return {
            "sent": conn.sent,
            "closed_at": conn.sent if conn.closed else None,
            "reason": conn.reason,
            "rss_peak": rss_peak,
        }
    finally:
        sel.close()
        conn.close(reset=True)


def _send_boxes(
    ctx: Context,
    unit: bytes,
    total: int,
    box_limit: int,
    write: int,
    pause: float,
    limit: float,
    label: str,
    reconnect: bool = True,
) -> Dict[str, Any]:
    """
    Send at least C{total} bytes of C{unit} repeated, as endless boxes, one
    connection after another (each a box past C{box_limit}, until the server
    closes it), or all on one connection (C{reconnect} false), for at most
    C{limit} seconds; measure the server meanwhile and for a second after.
    """
    server = ctx.server
    baseline = server.idle_cpu(1.0)  # the clean client's own load
    size = box_limit + 2 * len(unit) if reconnect else total
    payload = unit * -(-size // len(unit))
    cpu0 = server.cpu_seconds()
    rss0 = server.rss()
    rss_peak = rss0
    started = time.monotonic()
    deadline = started + limit
    sent = 0
    closes: List[Optional[int]] = []
    reasons: List[str] = []
    while sent < total and time.monotonic() < deadline:
        one = _send_one(ctx, payload, write, pause, deadline - time.monotonic(), label)
        sent += one["sent"]
        closes.append(one["closed_at"])
        if one["reason"] and len(reasons) < 3:
            reasons.append(str(one["reason"]))
        rss_peak = max(rss_peak, one["rss_peak"])
        ctx.progress(f"{label}: {sent / MB:.1f} MB sent in {len(closes)} connections")
        if one["sent"] == 0 or not reconnect:
            break
    cpu_attack = server.cpu_seconds() - cpu0
    seconds = time.monotonic() - started
    time.sleep(0.05)
    idle = server.idle_cpu(1.0)
    closed = [at for at in closes if at is not None]
    return {
        "bytes_sent": sent,
        "connections": len(closes),
        "closed_by_server": len(closed) == len(closes) and bool(closes),
        "closed_at_bytes_max": max(closed) if closed else None,
        "close_reasons": reasons,
        "server_cpu_s": round(cpu_attack, 3),
        # Without the clean client's own load over the attack.
        "server_cpu_net_s": round(max(0.0, cpu_attack - baseline * seconds), 3),
        "server_cpu_after_s": round(max(0.0, idle - baseline), 3),
        "baseline_cpu_s": round(baseline, 3),
        "rss_growth": rss_peak - rss0,
    }


def _judge(result: Dict[str, Any], limit: int, slack: int) -> List[str]:
    defects: List[str] = []
    if not result["closed_by_server"]:
        defects.append(
            f"a connection was not closed by the server after {result['bytes_sent'] / MB:.1f} MB "
            f"of endless boxes (limit {limit:,} bytes)"
        )
    elif result["closed_at_bytes_max"] > limit + slack:
        defects.append(
            f"closed only after {result['closed_at_bytes_max']:,} bytes (limit {limit:,} + "
            f"{slack:,} in flight)"
        )
    cpu = result["server_cpu_s"] + result["server_cpu_after_s"]
    if cpu >= CPU_TARGET:
        defects.append(f"server CPU {cpu:.2f} s (target < {CPU_TARGET:g} s)")
    if result["server_cpu_after_s"] >= IDLE_TARGET:
        defects.append(
            f"server still busy after the last connection closed: "
            f"{result['server_cpu_after_s']:.2f} s CPU in the next second"
        )
    if result["rss_growth"] >= RSS_TARGET:
        defects.append(f"RSS grew by {result['rss_growth'] / MB:.1f} MB")
    return defects


def _measured(result: Dict[str, Any]) -> str:
    closed = (
        f"each closed by {result['closed_at_bytes_max']:,} B"
        if result["closed_by_server"]
        else "not all closed"
    )
    return (
        f"{closed}; CPU {result['server_cpu_s']:.2f} s + "
        f"{result['server_cpu_after_s']:.2f} s after; RSS +{result['rss_growth'] / MB:.1f} MB"
    )


class _EndlessBoxes(Family):
    """
    Endless boxes of C{unit} pairs, C{total} bytes in all (C{quick_total}
    for a quick run), in writes of C{write} bytes C{pause} seconds apart,
    under a box limit of C{box_limit} (the server's default when C{None}).
    """

    unit: bytes
    total: int
    quick_total: int
    write: int
    pause: float
    seconds: float
    slack: int
    box_limit: Optional[int] = None
    reconnect = True

    def server_args(self, options: Sequence[str]) -> List[str]:
        args = super().server_args(options)
        if self.box_limit is not None and "max-box-bytes" in options:
            args += ["--max-box-bytes", str(self.box_limit)]
        return args

    def attack(self, ctx: Context) -> Outcome:
        total = ctx.scale(self.total, self.quick_total)
        limit_bytes = self.box_limit or ctx.defaults["max-box-bytes"]
        result = _send_boxes(
            ctx,
            self.unit,
            total,
            limit_bytes,
            self.write,
            self.pause,
            ctx.seconds(self.seconds, self.seconds / 3),
            self.name,
            self.reconnect,
        )
        return Outcome(
            volume=(
                f"{size_text(result['bytes_sent'])} of {total / MB:.0f} MB "
                f"in {result['connections']:,} connections"
            ),
            measured=_measured(result),
            defects=_judge(result, limit_bytes, self.slack),
            details=result,
        )


class SlowParse(_EndlessBoxes):
    """
    One endless box of tiny pairs, read a small write at a time.
    """

    name = "slow-parse"
    method = (
        "one connection sends an endless box of 1-byte key/value pairs, up to 12 MB, in 2 KB "
        "writes (TCP_NODELAY, 0.2 ms apart, at most 30 s)"
    )
    target = "< 1 s server CPU in all, idle after; closed past the box limit (16,384 B)"
    unit = amp_pair(b"k", b"v")
    total = 12 * MB
    quick_total = 2 * MB
    write = 2048
    pause = 0.0002
    seconds = 30.0
    slack = SLOW_SLACK
    reconnect = False


class SlowParseMegabyte(SlowParse):
    """
    Boxes of 1 MB of tiny pairs under the highest box limit, in small and in
    large reads.
    """

    name = "slow-parse-1mb"
    method = (
        "under --max-box-bytes 1048576: 6 endless boxes of 1-byte pairs dribbled in 2 KB "
        "writes, then 6 in 64 KB writes, each closed at 1 MiB"
    )
    target = (
        f"server CPU of the small reads < {READ_SIZE_RATIO:g}x that of the large ones "
        "(no re-parse), idle after"
    )
    box_limit = MAX_BOX_LIMIT
    boxes = 6

    def attack(self, ctx: Context) -> Outcome:
        boxes = ctx.scale(self.boxes, 2)
        runs: Dict[int, Dict[str, Any]] = {}
        defects: List[str] = []
        for write in (2048, 65536):
            runs[write] = result = _send_boxes(
                ctx,
                self.unit,
                boxes * MAX_BOX_LIMIT,
                MAX_BOX_LIMIT,
                write,
                self.pause if write == 2048 else 0.0,
                ctx.seconds(60.0, 20.0),
                f"{self.name} ({write // 1024} KB writes)",
            )
            defects += [
                f"{write // 1024} KB writes: {defect}"
                for defect in _judge(result, MAX_BOX_LIMIT, self.slack)
                if "server CPU" not in defect
            ]
        small, large = runs[2048], runs[65536]
        ratio = small["server_cpu_net_s"] / max(large["server_cpu_net_s"], 1e-3)
        if ratio >= READ_SIZE_RATIO:
            defects.append(
                f"CPU in 2 KB reads {small['server_cpu_net_s']:.2f} s, {ratio:.2f}x that in 64 KB "
                f"reads ({large['server_cpu_net_s']:.2f} s; target < {READ_SIZE_RATIO:g}x)"
            )
        return Outcome(
            volume=(
                f"{(small['bytes_sent'] + large['bytes_sent']) / MB:.1f} MB in "
                f"{small['connections'] + large['connections']} connections"
            ),
            measured=(
                f"CPU {small['server_cpu_net_s']:.2f} s in 2 KB reads, "
                f"{large['server_cpu_net_s']:.2f} s in 64 KB reads ({ratio:.2f}x, the clean "
                f"client's load taken off); {_measured(small)}"
            ),
            defects=defects,
            details={"small_reads": small, "large_reads": large, "ratio": round(ratio, 3)},
        )


class BigBox(_EndlessBoxes):
    """
    Endless boxes of 64 KB values, as fast as they go.
    """

    name = "big-box"
    method = "endless boxes of 64 KB values, 48 MB in all, as fast as accepted (at most 30 s)"
    target = "each closed at the box limit, RSS growth < 32 MB, < 1 s server CPU"
    unit = amp_pair(b"k", b"x" * 65535)
    total = 48 * MB
    quick_total = 8 * MB
    write = 1 << 20
    pause = 0.0
    seconds = 30.0
    slack = BIG_SLACK
