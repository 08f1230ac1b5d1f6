"""
C{fuzz}: a million fuzzed and mutated boxes over many connections to both
listeners (mostly the front end), reconnecting whenever the server drops a
connection.

State check: before fuzzing, each pool the fuzzer names gets a worker with
no free slot, so no C{NextWorker} can take a slot; the scheduler listener is
fuzzed only with well-framed boxes that cannot change the worker list (see
L{amp_attack.fuzzgen}), and framing damage is sent there only as the last box
of a connection.  Meanwhile a control stream makes valid C{WorkerUpdate} and
C{WorkerGone} calls, one at a time, on a connection of its own.  Afterwards
the worker list must be exactly the fixtures, the clean client's worker and
what the control stream made it; every slot taken must be the clean
client's; no call may still wait.
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Set, Tuple

from ..clean import CLEAN_CAPACITY, CLEAN_POOL, CLEAN_WORKER
from ..conns import Conn, Loop, close_all
from ..fuzzgen import FUZZ_POOLS, Chunk, Pool, frontend_pool, scheduler_pool
from ..harness import CHECK_TIMEOUT, MB, Context, Family, Outcome, assigned
from ..sentinel import SentinelStream
from ..wire import BoxParser, Caller, CallFailed, call_box

#: Fixture workers: one per fuzzed pool, no free slot.
FIXTURES = {f"fx-{pool}": pool for pool in FUZZ_POOLS}
#: The control stream's workers.
VALID_POOL = "fz"
RSS_TARGET = 32 * MB


#: How long a chunk's sentinel may go unanswered before the connection
#: counts as out of step (its framing damaged) and is replaced.
STALL_SECONDS = 5.0
#: Chunks in flight (sent, sentinel not answered yet) on one connection.
IN_FLIGHT = 2
#: The size of a sentinel call (its tag has up to 9 digits).
SENTINEL_BYTES = len(call_box("Stats", b"sentinel-123456789"))


class _Stream(SentinelStream):
    """
    One fuzzing connection: a few chunks of boxes, each followed by a
    sentinel (L{SentinelStream}); then (often) a framing-damaged box, then a
    half-close, after which the server closes the connection in turn.
    """

    def __init__(
        self, role: str, conn: Conn, next_chunk: int, chunks_left: int, damaged: bytes
    ) -> None:
        super().__init__(conn)
        self.role = role
        self.next_chunk = next_chunk
        self.chunks_left = chunks_left
        self.damaged = damaged
        self.half_closed_at: Optional[float] = None
        # (where a chunk's bytes end in the output, its boxes), not all written yet
        self.unwritten: Deque[Tuple[int, int]] = deque()
        self.queued_bytes = 0

    def queue(self, chunk: Chunk, now: float) -> None:
        self.queue_batch(chunk.data, len(chunk.ends), now)
        self._count(len(chunk.data) + SENTINEL_BYTES, len(chunk.ends))
        self.chunks_left -= 1
        if self.chunks_left == 0 and self.damaged:
            self.conn.queue(self.damaged)
            self._count(len(self.damaged), 1)

    def _count(self, size: int, boxes: int) -> None:
        self.queued_bytes += size
        self.unwritten.append((self.queued_bytes, boxes))

    def written(self) -> int:
        """
        Boxes all of whose bytes were written since the last call.
        """
        boxes = 0
        while self.unwritten and self.unwritten[0][0] <= self.conn.sent:
            boxes += self.unwritten.popleft()[1]
        return boxes

    def close_output(self, now: float) -> None:
        self.chunks_left = 0
        self.half_closed_at = now
        self.half_close()


class _ControlStream:
    """
    Valid calls on a scheduler connection of their own, one at a time: an
    update of a new C{fzv-N} worker (no free slot), and every third call a
    C{WorkerGone} of one of them.  C{expected} is what the worker list must
    hold of them afterwards.
    """

    def __init__(self, port: int, seed: int, gap: float) -> None:
        self.conn = Conn(port)
        self.parser = BoxParser()
        self.rng = random.Random(seed)
        self.gap = gap
        self.next_at = 0.0
        self.outstanding: Optional[Tuple[bytes, str, str]] = None
        self.expected: Set[str] = set()
        self.counter = 0
        self.answered = 0
        self.wrong: List[str] = []

    def pump(self, now: float) -> None:
        """
        Make the next call when its time has come (never with C{now} < 0).
        """
        if self.conn.closed:
            return
        if self.outstanding is None and now >= self.next_at >= 0 and now >= 0:
            self.counter += 1
            tag = b"v%d" % (self.counter,)
            if self.counter % 3 == 0 and self.expected:
                worker = self.rng.choice(sorted(self.expected))
                self.conn.queue(call_box("WorkerGone", tag, worker_id=worker))
                self.outstanding = (tag, "gone", worker)
            else:
                worker = f"fzv-{self.counter}"
                box = call_box(
                    "WorkerUpdate",
                    tag,
                    worker_id=worker,
                    host="10.9.9.9",
                    port=9,
                    capacity=0,
                    pool=VALID_POOL,
                )
                self.conn.queue(box)
                self.outstanding = (tag, "update", worker)
            self.next_at = now + self.gap
        self.conn.flush()

    def finish(self, seconds: float) -> None:
        """
        Wait for the answer to the call in flight, if any.
        """
        deadline = time.monotonic() + seconds
        while self.outstanding is not None and not self.conn.closed:
            if time.monotonic() > deadline:
                self.wrong.append("control stream: no answer to its last call")
                return
            self.conn.flush()
            time.sleep(0.01)
            self.read()

    def read(self) -> None:
        for box in self.parser.feed(self.conn.read(keep=True)):
            if self.outstanding is None or box.get(b"_answer") != self.outstanding[0]:
                self.wrong.append(f"control stream: unexpected answer {sorted(box)!r}")
                continue
            _, kind, worker = self.outstanding
            self.outstanding = None
            self.answered += 1
            if kind == "update":
                if box.get(b"accepted") != b"True":
                    self.wrong.append(f"valid update of {worker} not accepted")
                self.expected.add(worker)
            else:
                if box.get(b"known") != b"True":
                    self.wrong.append(f"WorkerGone of {worker} answered not known")
                self.expected.discard(worker)


class _Fuzzer:
    """
    The fuzzing connections: 12 to the front end, 4 to the scheduler, each
    replaced by a fresh one when it ends.  C{written} counts the boxes
    written, C{read} those the server is proven to have read, C{lost} those
    in flight on connections that it dropped or that fell out of step.
    """

    CONNECTIONS = (("frontend", 12), ("scheduler", 4))

    def __init__(self, ctx: Context, front: Pool, sched: Pool):
        self.server = ctx.server
        self.pools = {"frontend": front, "scheduler": sched}
        self.rng = random.Random(4)
        self.loop = Loop()
        self.streams: Dict[int, _Stream] = {}
        self.counts = {"frontend": 0, "scheduler": 0}
        self.drops = {"frontend": 0, "scheduler": 0}
        self.read = 0
        self.written = 0
        self.lost = 0
        self.opened = 0
        self.stuck = 0
        self.out_of_step = 0
        self.connect_failures = 0

    def in_flight(self) -> int:
        return sum(s.unconfirmed() for s in self.streams.values())

    def open_all(self) -> None:
        for role, n in self.CONNECTIONS:
            for _ in range(n):
                self._open(role)

    def _open(self, role: str) -> None:
        port = self.server.frontend if role == "frontend" else self.server.scheduler
        pool = self.pools[role]
        try:
            conn = Conn(port)
        except OSError:
            self.connect_failures += 1
            return
        r = self.rng
        chunks = r.choice([1, 2, 4, 8, 16, 64])
        damaged = r.choice(pool.damaged) if r.random() < 0.6 else b""
        stream = _Stream(role, conn, r.randrange(len(pool.chunks)), chunks, damaged)
        self.streams[conn.fd] = stream
        self.loop.add(conn)
        self.opened += 1

    def readable(self, conn: Conn) -> None:
        stream = self.streams[conn.fd]
        n = stream.read()
        self.counts[stream.role] += n
        self.read += n

    def step(self, now: float, feeding: bool) -> None:
        """
        Queue and write what each connection may take, replace the
        connections that ended.
        """
        ended: List[_Stream] = []
        for stream in self.streams.values():
            conn = stream.conn
            if stream.half_closed_at is None and not conn.closed:
                if not feeding:
                    stream.chunks_left = 0
                while stream.chunks_left and len(stream.inflight) < IN_FLIGHT:
                    pool = self.pools[stream.role]
                    stream.queue(pool.chunks[stream.next_chunk % len(pool.chunks)], now)
                    stream.next_chunk += 1
                conn.flush()
                self.written += stream.written()
                if not stream.chunks_left and not conn.pending() and not conn.closed:
                    stream.close_output(now)
            if conn.closed:
                if stream.half_closed_at is None:
                    self.drops[stream.role] += 1
                ended.append(stream)
            elif stream.half_closed_at is not None and now - stream.half_closed_at > 10:
                self.stuck += 1
                ended.append(stream)
            elif now - stream.oldest() > STALL_SECONDS:
                self.out_of_step += 1
                ended.append(stream)
        for stream in ended:
            self.lost += stream.unconfirmed()
            del self.streams[stream.conn.fd]
            self.loop.remove(stream.conn)
            stream.conn.close(reset=True)
            if feeding:
                self._open(stream.role)


class Fuzz(Family):
    """
    Fuzzed boxes to both listeners, then the state check.
    """

    name = "fuzz"
    method = (
        "1,000,000 fuzzed/mutated boxes (random bytes, bit flips, bad lengths, keys > 255, "
        "64 KB values, duplicate/missing/extra arguments, huge integers, NaN/inf/-0, "
        "non-UTF-8, unknown commands, fake answers, empty and _ask-only boxes) over 12 "
        "front-end and 4 scheduler connections, reconnecting when dropped; a sentinel Stats "
        "after every 64 boxes proves what the server read. State check: every fuzzed pool "
        "holds only a worker with no free slot; the scheduler gets only boxes that the "
        "schema's own parsers say cannot change the worker list (framing damage only as a "
        "connection's last box), beside a control stream of valid updates and removals; "
        "afterwards the worker list must be the fixtures plus what the control stream made "
        "it, every slot taken the clean client's, no call left waiting"
    )
    target = (
        "no crash, no traceback line, worker list and slots changed only by the valid "
        "calls, RSS growth < 32 MB"
    )

    def setup(self, ctx: Context) -> None:
        ctx.progress("registering fixtures, generating boxes")
        boxes = [
            call_box(
                "WorkerUpdate", b"f%d" % i, worker_id=w, host="10.8.8.8", port=9, capacity=0, pool=p
            )
            for i, (w, p) in enumerate(FIXTURES.items())
        ]
        for answer in ctx.control.pipeline(boxes):
            if answer.get(b"accepted") != b"True":
                raise RuntimeError(f"fixture not registered: {answer!r}")
        self.front = frontend_pool(1, ctx.scale(40_000, 8_000))
        self.sched = scheduler_pool(2, ctx.scale(10_000, 3_000))
        self.before = ctx.control.stats()
        self.clean_assigned_before = assigned(ctx.control, CLEAN_WORKER)

    def attack(self, ctx: Context) -> Outcome:
        total = ctx.scale(1_000_000, 30_000)
        limit = ctx.seconds(240.0, 20.0)
        server = ctx.server
        fuzzer = _Fuzzer(ctx, self.front, self.sched)
        control = _ControlStream(server.scheduler, 5, ctx.seconds(0.02, 0.01))
        fuzzer.loop.add(control.conn)
        rss_before = server.rss()
        rss_peak = rss_before
        t0 = time.monotonic()
        next_sample = t0
        try:
            fuzzer.open_all()
            while server.alive():
                now = time.monotonic()
                feeding = fuzzer.written < total and now - t0 < limit
                if not feeding and not fuzzer.streams:
                    break
                control.pump(now if feeding else -1.0)
                for conn in fuzzer.loop.wait(0.05):
                    if conn is control.conn:
                        control.read()
                    else:
                        fuzzer.readable(conn)
                fuzzer.step(now, feeding)
                if now >= next_sample:
                    next_sample = now + 0.5
                    rss_peak = max(rss_peak, server.rss() if server.alive() else 0)
                    ctx.progress(
                        f"{fuzzer.written:,} boxes sent, {fuzzer.read:,} read, "
                        f"{sum(fuzzer.drops.values()):,} connections dropped, {now - t0:.0f} s"
                    )
            control.finish(5.0)
        finally:
            close_all([s.conn for s in fuzzer.streams.values()])
            control.conn.close()
            fuzzer.loop.close()
        seconds = time.monotonic() - t0
        read, written = fuzzer.read, fuzzer.written
        defects: List[str] = list(control.wrong[:5])
        if server.alive():
            time.sleep(0.5)
            rss_peak = max(rss_peak, server.rss())
        growth = rss_peak - rss_before
        if growth >= RSS_TARGET:
            defects.append(f"RSS grew by {growth / MB:.1f} MB (target < 32 MB)")
        if written < total:
            defects.append(f"only {written:,} of {total:,} boxes sent in {seconds:.0f} s")
        if fuzzer.stuck:
            defects.append(f"{fuzzer.stuck} connections not closed by the server 10 s after ours")
        drops = sum(fuzzer.drops.values())
        details: Dict[str, Any] = {
            "boxes_sent": written,
            "boxes_read": fuzzer.counts,
            "boxes_unconfirmed": fuzzer.lost,
            "connections": fuzzer.opened,
            "dropped_by_server": fuzzer.drops,
            "out_of_step": fuzzer.out_of_step,
            "seconds": round(seconds, 1),
            "boxes_per_s": round(written / seconds) if seconds else None,
            "connect_failures": fuzzer.connect_failures,
            "control_calls_answered": control.answered,
            "rss_growth": growth,
        }

        def verify(clean: Dict[str, Any]) -> List[str]:
            return self._verify(ctx, control.expected, clean, details)

        return Outcome(
            volume=f"{written:,} boxes in {fuzzer.opened:,} connections",
            measured=(
                f"{read:,} proven read ({read / seconds:,.0f}/s); {drops:,} connections "
                f"dropped early; RSS +{growth / MB:.1f} MB"
            ),
            defects=defects,
            details=details,
            verify=verify,
        )

    def _verify(
        self, ctx: Context, valid: Set[str], clean: Dict[str, Any], details: Dict[str, Any]
    ) -> List[str]:
        """
        The state check: no call waits, the worker list is exactly what the
        valid calls made it, and every slot taken was the clean client's.
        """
        defects: List[str] = []
        try:
            with Caller(ctx.server.scheduler, CHECK_TIMEOUT) as caller:
                deadline = time.monotonic() + 5
                stats = caller.stats()
                while stats["waiting"] and time.monotonic() < deadline:
                    time.sleep(0.1)
                    stats = caller.stats()
                rows = caller.list_all()
        except (OSError, CallFailed) as e:
            return [f"state check failed: {e}"]
        if stats["waiting"]:
            defects.append(f"{stats['waiting']} calls still wait after the fuzzers closed")
        expected: Dict[str, Tuple[str, int]] = {w: (p, 0) for w, p in FIXTURES.items()}
        expected.update({w: (VALID_POOL, 0) for w in valid})
        expected[CLEAN_WORKER] = (CLEAN_POOL, CLEAN_CAPACITY)
        found = {
            row[b"worker_id"].decode("utf-8", "replace"): (
                row[b"pool"].decode("utf-8", "replace"),
                int(row[b"capacity"]),
            )
            for row in rows
        }
        unexpected = sorted(set(found) - set(expected))
        missing = sorted(set(expected) - set(found))
        changed = sorted(w for w in set(found) & set(expected) if found[w] != expected[w])
        for label, ids in (("unexpected", unexpected), ("missing", missing), ("changed", changed)):
            if ids:
                defects.append(f"{len(ids)} {label} workers after fuzzing, e.g. {ids[:3]!r}")
        if stats["workers"] != len(expected):
            defects.append(f"Stats says {stats['workers']} workers, {len(expected)} expected")
        clean_row = next((r for r in rows if r[b"worker_id"] == CLEAN_WORKER.encode()), None)
        dispatched = stats["dispatched"] - self.before["dispatched"]
        clean_taken = (
            None
            if clean_row is None
            else int(clean_row[b"capacity"]) - int(clean_row[b"free"]) - self.clean_assigned_before
        )
        details["state_check"] = {
            "workers": len(found),
            "expected": len(expected),
            "dispatched": dispatched,
            "clean_slots_taken": clean_taken,
            "clean_answered": clean.get("answered"),
        }
        if clean_taken is not None and dispatched != clean_taken:
            defects.append(
                f"{dispatched - clean_taken} slots taken by fuzzed calls "
                f"({dispatched} dispatched, {clean_taken} to the clean client)"
            )
        answered = clean.get("answered", 0) + clean.get("warmup_calls", 0)
        stalled = clean.get("stalled", 0)
        if clean_taken is not None and not answered <= clean_taken <= answered + stalled:
            defects.append(
                f"the clean worker gave {clean_taken} slots, the clean client got {answered}"
            )
        return defects
