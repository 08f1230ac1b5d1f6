"""
C{log-flood}: boxes the server rejects, sent as fast as one front-end
connection can, one kind at a time, measuring how much the server logs:
fake answers (C{_answer}, C{_error} with random tags), empty boxes,
C{_ask}-only boxes, and unknown commands with 60 KB names.  Each kind runs
for 2 s; its boxes are counted as read by sentinels (L{SentinelStream}); a
connection the server drops counts one box read and is replaced.

Then a command name of 65,500 bytes, and one of 65,535 (the longest value
AMP allows): each must get an C{UNHANDLED} error answer, and the connection
must stay usable (a C{Stats} on it is answered).  The server runs with
C{--max-box-bytes 262144} where it has that option, so that these boxes
reach the command dispatch rather than the box size limit.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence

from ..conns import Conn, Loop
from ..harness import Context, Family, Outcome, probe
from ..sentinel import SentinelStream
from ..wire import amp_box, call_box

PER_BOX_TARGET = 1024
PER_SECOND_TARGET = 20 * 1024
IN_FLIGHT = 4


def _fake_answer(r: random.Random) -> bytes:
    return amp_box([(b"_answer", b"%x" % r.getrandbits(48)), (b"x", b"y")])


def _fake_error(r: random.Random) -> bytes:
    return amp_box(
        [
            (b"_error", b"%x" % r.getrandbits(48)),
            (b"_error_code", b"UNKNOWN"),
            (b"_error_description", b"fake"),
        ]
    )


def _empty(r: random.Random) -> bytes:
    return b"\x00\x00"


def _ask_only(r: random.Random) -> bytes:
    return amp_box([(b"_ask", b"%x" % r.getrandbits(32))])


def _long_unknown(r: random.Random) -> bytes:
    name = bytes([r.randrange(65, 91)]) * 60 * 1024
    return call_box(name, b"%x" % r.getrandbits(32))


@dataclass(frozen=True)
class Kind:
    """
    One kind of rejected box: how to make one, boxes per batch.
    """

    name: str
    make: Callable[[random.Random], bytes]
    batch: int


KINDS = [
    Kind("fake _answer", _fake_answer, 256),
    Kind("fake _error", _fake_error, 256),
    Kind("empty box", _empty, 256),
    Kind("_ask-only box", _ask_only, 256),
    Kind("60 KB command name", _long_unknown, 4),
]


def flood_kind(ctx: Context, kind: Kind, seconds: float) -> Dict[str, Any]:
    """
    Send boxes of C{kind} for C{seconds} on one connection at a time (a new
    one when the server drops it); the boxes read and the log written.
    """
    server = ctx.server
    r = random.Random(11)
    batches = [b"".join(kind.make(r) for _ in range(kind.batch)) for _ in range(16)]
    loop = Loop()
    stream = SentinelStream(Conn(server.frontend))
    loop.add(stream.conn)
    read = drops = written_batches = 0
    log0 = server.log_size()
    t0 = time.monotonic()
    try:
        while server.alive():
            now = time.monotonic()
            feeding = now - t0 < seconds
            if feeding and len(stream.inflight) < IN_FLIGHT and not stream.conn.closed:
                stream.queue_batch(batches[written_batches % len(batches)], kind.batch, now)
                written_batches += 1
            stream.conn.flush()
            if not feeding and not stream.half_closed and not stream.conn.pending():
                stream.half_close()
            for _ in loop.wait(0.02):
                read += stream.read()
            if stream.conn.closed:
                if not stream.half_closed:
                    drops += 1
                    read += 1  # the box it dropped the connection for, at least
                loop.remove(stream.conn)
                stream.conn.close(reset=True)
                if not feeding:
                    break
                stream = SentinelStream(Conn(server.frontend))
                loop.add(stream.conn)
            elif now - t0 > seconds + 10:
                break  # the server did not finish reading in time
    finally:
        stream.conn.close(reset=True)
        loop.close()
    elapsed = time.monotonic() - t0
    time.sleep(0.2)  # the last lines reach the log
    logged = server.log_size() - log0
    return {
        "kind": kind.name,
        "boxes_read": read,
        "drops": drops,
        "log_bytes": logged,
        "log_bytes_per_box": round(logged / read, 1) if read else None,
        "log_bytes_per_s": round(logged / elapsed),
        "seconds": round(elapsed, 2),
    }


def huge_name(ctx: Context, size: int) -> Dict[str, Any]:
    """
    Call a command whose name has C{size} bytes: an C{UNHANDLED} error must
    come back, and a C{Stats} on the same connection must be answered.
    """
    result = probe(
        ctx.server.frontend, call_box(b"N" * size, b"huge"), b"huge", call_box("Stats", b"ping")
    )
    result["name_bytes"] = size
    return result


#: The box size limit the server gets here, where the build has one: the
#: boxes of this family (up to 65 KB) are above the default 16,384, and here
#: they must reach the command dispatch and its logging.
MAX_BOX_BYTES = 262_144


class LogFlood(Family):
    """
    Rejected boxes of each kind, measuring the log they cost.
    """

    name = "log-flood"
    method = (
        "one connection at a time, 2 s per kind: fake _answer/_error boxes, empty boxes, "
        "_ask-only boxes, 60 KB unknown command names; then 65,500- and 65,535-byte names "
        "(with --max-box-bytes 262144 where the build has it, so they reach the dispatch)"
    )
    target = (
        "< 1 KB of log per rejected box, < 20 KB/s from one connection, no traceback; "
        "the huge names answered UNHANDLED, connection kept"
    )

    def server_args(self, options: Sequence[str]) -> List[str]:
        extra = ["--max-box-bytes", str(MAX_BOX_BYTES)] if "max-box-bytes" in options else []
        return [*super().server_args(options), *extra]

    def attack(self, ctx: Context) -> Outcome:
        seconds = ctx.seconds(2.0, 0.5)
        kinds: List[Dict[str, Any]] = []
        defects: List[str] = []
        for kind in KINDS:
            ctx.progress(kind.name)
            result = flood_kind(ctx, kind, seconds)
            kinds.append(result)
            per_box = result["log_bytes_per_box"]
            if per_box is not None and per_box >= PER_BOX_TARGET:
                defects.append(f"{kind.name}: {per_box:,.0f} B of log per box")
            if result["log_bytes_per_s"] >= PER_SECOND_TARGET:
                defects.append(f"{kind.name}: {result['log_bytes_per_s'] / 1024:,.0f} KB/s of log")
            if result["drops"]:
                defects.append(f"{kind.name}: {result['drops']:,} connections dropped")
        names = [huge_name(ctx, size) for size in (65_500, 65_535)]
        for n in names:
            if n["answer"] != "UNHANDLED" or not n["connection_kept"]:
                got = n["answer"] or n.get("error", "no answer")
                defects.append(
                    f"{n['name_bytes']:,}-byte command name: {got}"
                    + ("" if n["connection_kept"] else ", connection not kept")
                )
        worst_box = max((k["log_bytes_per_box"] or 0) for k in kinds)
        worst_rate = max(k["log_bytes_per_s"] for k in kinds)
        boxes = sum(k["boxes_read"] for k in kinds)
        return Outcome(
            volume=f"{boxes:,} boxes read, {sum(k['drops'] for k in kinds):,} drops",
            measured=(
                f"worst {worst_box:,.0f} B/box, {worst_rate / 1024:,.0f} KB/s; huge names: "
                + ", ".join(str(n["answer"] or "no answer") for n in names)
            ),
            defects=defects,
            details={"kinds": kinds, "huge_names": names},
        )
