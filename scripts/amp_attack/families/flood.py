"""
C{flood-*}: one flood per kind of call, 8 connections each keeping 256
calls in flight (a new call for every answer) for 10 seconds, while the
clean client's p99 must stay under 50 ms.

Kinds: C{NextWorker} (a pool with a worker of huge capacity), C{Stats},
C{ListWorkers} (scheduler; 20,000 workers registered, pages of 500),
C{WorkerUpdate} (scheduler; 1,000 workers updated over and over), bad
boxes (C{NextWorker} with invalid arguments: C{INVALID_ARGUMENT}) and
unknown commands (C{UNHANDLED}).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from ..conns import Conn, Loop, close_all
from ..harness import MB, Context, Family, Outcome
from ..wire import AmpAnswers, call_box

CONNECTIONS = 8
IN_FLIGHT = 256
RING = 4096
P99_TARGET_MS = 50.0
FLOOD_POOL = "flood"
LIST_WORKERS = 20_000


def _next_worker(r: random.Random, tag: bytes) -> bytes:
    return call_box("NextWorker", tag, pool=FLOOD_POOL)


def _stats(r: random.Random, tag: bytes) -> bytes:
    return call_box("Stats", tag)


def _list_workers(r: random.Random, tag: bytes) -> bytes:
    return call_box("ListWorkers", tag, limit=500, after=f"lw-{r.randrange(LIST_WORKERS):06d}")


def _update(r: random.Random, tag: bytes) -> bytes:
    return call_box(
        "WorkerUpdate",
        tag,
        worker_id=f"up-{r.randrange(1000)}",
        host="10.1.2.3",
        port=9000,
        capacity=r.randrange(4),
        pool="upd",
    )


_BAD_ARGUMENTS: List[Dict[str, str]] = [
    {"timeout": "-1"},
    {"timeout": "nan"},
    {"pool": ""},
    {"pool": "a\x01b"},
    {"timeout": "soon"},
]


def _bad(r: random.Random, tag: bytes) -> bytes:
    return call_box("NextWorker", tag, **r.choice(_BAD_ARGUMENTS))


def _unknown(r: random.Random, tag: bytes) -> bytes:
    return call_box(f"NoSuchCommand{r.randrange(100)}", tag)


@dataclass(frozen=True)
class Kind:
    """
    One kind of flood: its C{name}, the C{listener} it floods, and how to
    make a call.
    """

    name: str
    listener: str
    make: Callable[[random.Random, bytes], bytes]
    what: str
    #: The error code every answer must have (C{None}: a successful answer).
    expected: Optional[str] = None


KINDS = [
    Kind("nextworker", "frontend", _next_worker, "NextWorker"),
    Kind("stats", "frontend", _stats, "Stats"),
    Kind("listworkers", "scheduler", _list_workers, "ListWorkers (limit 500, 20k workers)"),
    Kind("update", "scheduler", _update, "WorkerUpdate"),
    Kind("bad", "frontend", _bad, "NextWorker with invalid arguments", "INVALID_ARGUMENT"),
    Kind("unknown", "frontend", _unknown, "unknown commands", "UNHANDLED"),
]


class _FloodConn:
    """
    One flooding connection: a ring of ready calls, C{IN_FLIGHT} of them
    outstanding, a new one sent for every answer.
    """

    def __init__(self, port: int, ring: List[bytes]) -> None:
        self.conn = Conn(port)
        self.ring = ring
        self.at = 0
        self.answers = AmpAnswers()
        self.outstanding = 0
        self.answered = 0

    def top_up(self) -> None:
        need = IN_FLIGHT - self.outstanding
        if need > 0:
            end = self.at + need
            calls = self.ring[self.at : end]
            if end > len(self.ring):
                calls += self.ring[: end - len(self.ring)]
            self.at = end % len(self.ring)
            self.conn.queue(b"".join(calls))
            self.outstanding += need
        self.conn.flush()

    def read(self) -> None:
        n = len(self.answers.feed(self.conn.read(keep=True)))
        self.outstanding -= n
        self.answered += n


class Flood(Family):
    """
    A flood of one L{Kind}.
    """

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.name = f"flood-{kind.name}"
        listener = "scheduler" if kind.listener == "scheduler" else "front-end"
        self.method = (
            f"{kind.what} on the {listener} listener: {CONNECTIONS} connections x "
            f"{IN_FLIGHT} calls in flight, 10 s"
        )
        self.target = f"clean client p99 < {P99_TARGET_MS:g} ms"

    def setup(self, ctx: Context) -> None:
        if self.kind.name == "nextworker":
            boxes = [
                call_box(
                    "WorkerUpdate",
                    b"s",
                    worker_id="flood-w",
                    host="127.0.0.1",
                    port=9,
                    capacity=1_000_000_000,
                    pool=FLOOD_POOL,
                )
            ]
        elif self.kind.name == "listworkers":
            boxes = [
                call_box(
                    "WorkerUpdate",
                    b"%x" % (n,),
                    worker_id=f"lw-{n:06d}",
                    host=f"10.0.{n >> 8 & 255}.{n & 255}",
                    port=9000,
                    capacity=1,
                    pool="lw",
                )
                for n in range(LIST_WORKERS)
            ]
        else:
            return
        if ctx.quick and self.kind.name == "listworkers":
            boxes = boxes[: len(boxes) // 4]
        ctx.progress(f"registering {len(boxes):,} workers")
        for start in range(0, len(boxes), 2000):
            answers = ctx.control.pipeline(boxes[start : start + 2000], 60.0)
            if any(a.get(b"accepted") != b"True" for a in answers):
                raise RuntimeError("set-up: a worker was not registered")

    def attack(self, ctx: Context) -> Outcome:
        seconds = ctx.seconds(10.0, 1.0)
        server = ctx.server
        port = server.frontend if self.kind.listener == "frontend" else server.scheduler
        r = random.Random(7)
        ring = [self.kind.make(r, b"%x" % (n,)) for n in range(RING)]
        loop = Loop()
        floods: List[_FloodConn] = []
        rss0 = server.rss()
        rss_peak = rss0
        dropped = 0
        t0 = time.monotonic()
        next_sample = t0
        try:
            for _ in range(CONNECTIONS):
                f = _FloodConn(port, ring)
                floods.append(f)
                loop.add(f.conn)
            by_fd = {f.conn.fd: f for f in floods}
            while time.monotonic() - t0 < seconds and server.alive():
                for f in list(by_fd.values()):
                    if f.conn.closed:
                        dropped += 1
                        loop.remove(f.conn)
                        del by_fd[f.conn.fd]
                        continue
                    f.top_up()
                for conn in loop.wait(0.05):
                    if conn.fd in by_fd:
                        by_fd[conn.fd].read()
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + 0.5
                    rss_peak = max(rss_peak, server.rss())
                    answered = sum(f.answered for f in floods)
                    ctx.progress(f"{answered:,} answers, {now - t0:.0f} s")
            elapsed = time.monotonic() - t0
        finally:
            close_all([f.conn for f in floods])
            loop.close()
        answered = sum(f.answered for f in floods)
        codes: Dict[str, int] = {}
        for f in floods:
            for code, n in f.answers.codes.items():
                key = code.decode("ascii", "replace")
                codes[key] = codes.get(key, 0) + n
        if server.alive():
            rss_peak = max(rss_peak, server.rss())
        defects: List[str] = []
        if dropped:
            defects.append(f"{dropped} flooding connections dropped by the server")
        if answered == 0:
            defects.append("no call answered")
        wrong = {c: n for c, n in codes.items() if c != self.kind.expected}
        if self.kind.expected is not None:
            wrong["success"] = answered - sum(codes.values())
        for what, n in sorted(wrong.items()):
            if n:
                defects.append(f"{n:,} answers {what}, expected {self.kind.expected or 'success'}")
        errors = ", ".join(f"{n:,} {code}" for code, n in sorted(codes.items()))
        return Outcome(
            volume=f"{answered:,} calls answered",
            measured=(
                f"{answered / elapsed:,.0f} calls/s{'; ' + errors if errors else ''}; "
                f"RSS +{(rss_peak - rss0) / MB:.1f} MB"
            ),
            defects=defects,
            details={
                "answered": answered,
                "calls_per_s": round(answered / elapsed),
                "error_codes": codes,
                "dropped_connections": dropped,
                "rss_growth": rss_peak - rss0,
            },
            clean_p99_ms=P99_TARGET_MS,
        )


def flood_families() -> List[Flood]:
    return [Flood(kind) for kind in KINDS]
