"""
What held before, kept cheaply:

- C{churn}: 20,000 connect/disconnect cycles (one in ten to the scheduler,
  one in eight making a C{Stats} call first, most closed with a reset, some
  with a FIN): the server's open descriptors must come back to what they
  were (no fd leak), its RSS must not grow much.
- C{slowloris}: 300 connections each sending one byte of a box every second
  for 10 s: the clean client's p99 must stay under 50 ms.
"""

from __future__ import annotations

import socket
import time
from typing import List

from ..conns import Conn, close_all
from ..harness import MB, Context, Family, Outcome
from ..wire import Caller, CallFailed, call_box, connect

RSS_TARGET = 32 * MB
P99_TARGET_MS = 50.0


class Churn(Family):
    """
    Connect and disconnect, over and over; count the server's fds.
    """

    name = "churn"
    method = (
        "20,000 connect/disconnect cycles (10% scheduler, 1 in 8 with a Stats call, "
        "90% closed with RST)"
    )
    target = "no fd leak (server fds back to before), RSS growth < 32 MB"

    def attack(self, ctx: Context) -> Outcome:
        cycles = ctx.scale(20_000, 2_000)
        limit = ctx.seconds(90.0, 15.0)
        server = ctx.server
        fds0 = server.fds()
        rss0 = server.rss()
        log0 = server.log_size()
        rss_peak = rss0
        failures = done = 0
        t0 = time.monotonic()
        next_sample = t0
        while done < cycles and time.monotonic() - t0 < limit:
            port = server.scheduler if done % 10 == 9 else server.frontend
            done += 1
            try:
                if done % 8 == 0:
                    with Caller(port, 2.0) as caller:
                        caller.stats(2.0)
                        _reset(caller.sock, done)
                else:
                    sock = connect(port, 2.0)
                    _reset(sock, done)
                    sock.close()
            except (OSError, CallFailed):
                failures += 1
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + 0.5
                rss_peak = max(rss_peak, server.rss())
                ctx.progress(f"{done:,} cycles, {now - t0:.0f} s")
        elapsed = time.monotonic() - t0
        log_rate = (server.log_size() - log0) / elapsed
        fds1 = server.fds_settled(fds0, 5.0)
        if server.alive():
            rss_peak = max(rss_peak, server.rss())
        growth = rss_peak - rss0
        defects: List[str] = []
        if fds1 is not None and fds1 > fds0:
            defects.append(f"fd leak: {fds1 - fds0} more open fds than before (5 s after)")
        if growth >= RSS_TARGET:
            defects.append(f"RSS grew by {growth / MB:.1f} MB")
        if failures:
            defects.append(f"{failures:,} cycles failed (connect or Stats)")
        return Outcome(
            volume=f"{done:,} cycles",
            measured=(
                f"{done / elapsed:,.0f} cycles/s; fds {fds0} -> {fds1}; RSS +{growth / MB:.1f} MB; "
                f"log {log_rate / 1024:,.0f} KB/s"
            ),
            defects=defects,
            details={
                "cycles": done,
                "seconds": round(elapsed, 1),
                "failures": failures,
                "fds_before": fds0,
                "fds_after": fds1,
                "rss_growth": growth,
                "log_bytes_per_s": round(log_rate),
            },
        )


def _reset(sock: socket.socket, n: int) -> None:
    """
    Make C{sock}'s close a reset, but for one cycle in ten (a FIN).
    """
    if n % 10 != 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


class Slowloris(Family):
    """
    Many connections dribbling a box a byte a second.
    """

    name = "slowloris"
    method = "300 connections each sending one byte of a NextWorker box every second, 10 s"
    target = f"clean client p99 < {P99_TARGET_MS:g} ms"

    def attack(self, ctx: Context) -> Outcome:
        count = ctx.scale(300, 100)
        seconds = ctx.seconds(10.0, 2.0)
        server = ctx.server
        box = call_box("NextWorker", b"slow", pool="slowloris")
        conns: List[Conn] = []
        failures = 0
        try:
            for _ in range(count):
                try:
                    conns.append(Conn(server.frontend))
                except OSError:
                    failures += 1
            t0 = time.monotonic()
            sent = 0
            while time.monotonic() - t0 < seconds:
                for conn in conns:
                    if not conn.closed:
                        conn.queue(box[sent % len(box) : sent % len(box) + 1])
                        conn.flush()
                        conn.read()
                sent += 1
                ctx.progress(f"{sent} bytes on each of {len(conns)} connections")
                time.sleep(max(0.0, t0 + sent - time.monotonic()))
            closed = sum(1 for c in conns if c.closed)
        finally:
            close_all(conns)
        return Outcome(
            volume=f"{len(conns):,} connections x {sent} bytes",
            measured=f"{closed:,} closed by the server; {failures:,} could not connect",
            defects=[f"{failures:,} connections could not be opened"] if failures else [],
            details={"connections": len(conns), "bytes_each": sent, "closed_by_server": closed},
            clean_p99_ms=P99_TARGET_MS,
        )
