"""
Limits on single values and on one connection's share:

- C{big-ints}: a C{WorkerUpdate} whose capacity has 4,300 digits (the most
  Python converts to and from text by default), twice (two workers: their
  sum has 4,301), and one of 8,600 digits; C{NextWorker} with
  C{timeout=1e300}; a C{seq} of 100 digits; C{ttl=1e300}.  Each must be
  answered C{INVALID_ARGUMENT} on a connection that stays usable, and
  C{Stats} must keep answering on both listeners (the check after every
  family).
- C{waiting-share}: one front-end connection asks 2,000 C{NextWorker}s with
  a 30 s timeout of a pool with no free slot: beyond its share
  (C{--max-waiting-per-connection}, expected 1,000) it must get
  C{OVERLOADED}, while a second connection's call still waits (C{Stats}
  C{waiting} goes up) and is answered once an update frees the slots.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, List, Optional, Tuple

from ..conns import Conn
from ..harness import CHECK_TIMEOUT, Context, Family, Outcome, probe
from ..wire import Box, BoxParser, Caller, CallFailed, Value, call_box, error_code

INVALID = "INVALID_ARGUMENT"


class BigInts(Family):
    """
    Values too large to be meant: each must be refused.
    """

    name = "big-ints"
    method = (
        "WorkerUpdate capacity of 4,300 digits (two workers) and of 8,600; NextWorker "
        "timeout=1e300; seq of 100 digits; ttl=1e300"
    )
    target = "each answered INVALID_ARGUMENT, connection kept; Stats answers on both listeners"

    def attack(self, ctx: Context) -> Outcome:
        server = ctx.server
        update: Dict[str, Value] = {"host": "10.0.0.1", "port": 9000}
        probes: List[Tuple[str, int, str, Dict[str, Value]]] = [
            ("capacity 4,300 digits", server.scheduler, "WorkerUpdate",
             {"worker_id": "bi-1", "capacity": "9" * 4300, **update}),
            ("capacity 4,300 digits, again", server.scheduler, "WorkerUpdate",
             {"worker_id": "bi-2", "capacity": "9" * 4300, **update}),
            ("capacity 8,600 digits", server.scheduler, "WorkerUpdate",
             {"worker_id": "bi-3", "capacity": "9" * 8600, **update}),
            ("NextWorker timeout=1e300", server.frontend, "NextWorker",
             {"pool": "bi-none", "timeout": 1e300}),
            ("seq of 100 digits", server.scheduler, "WorkerUpdate",
             {"worker_id": "bi-4", "capacity": 1, "seq": "9" * 100, **update}),
            ("ttl=1e300", server.scheduler, "WorkerUpdate",
             {"worker_id": "bi-5", "capacity": 1, "ttl": 1e300, **update}),
        ]  # fmt: skip
        # Calls that any connection gets answered, whatever the probes did.
        pings = {
            server.frontend: call_box("NextWorker", b"ping", pool="bi-none"),
            server.scheduler: call_box("WorkerGone", b"ping", worker_id="bi-nobody"),
        }
        results: List[Dict[str, Any]] = []
        defects: List[str] = []
        for label, port, command, arguments in probes:
            ctx.progress(label)
            call = call_box(command, b"probe", **arguments)
            result = probe(port, call, b"probe", pings[port], ctx.seconds(3.0, 1.5))
            result["probe"] = label
            results.append(result)
            if result["answer"] != INVALID or not result["connection_kept"]:
                got = result["answer"] or result.get("error", "no answer")
                kept = "" if result["connection_kept"] else ", connection not usable"
                defects.append(f"{label}: {got}{kept}")
        held = sum(1 for r in results if r["answer"] == INVALID and r["connection_kept"])
        return Outcome(
            volume=f"{len(probes)} calls",
            measured=f"{held} of {len(probes)} answered {INVALID} with the connection kept",
            defects=defects,
            details={"probes": results},
        )


class WaitingShare(Family):
    """
    One connection's waiting calls against its share.
    """

    name = "waiting-share"
    method = (
        "one front-end connection asks 2,000 NextWorker (timeout 30 s) of a pool with no "
        "free slot; then a second connection asks one"
    )
    target = (
        "OVERLOADED beyond the per-connection share (1,000); the second connection's call "
        "waits and is answered when a slot frees"
    )
    POOL = "ws"

    def setup(self, ctx: Context) -> None:
        self._update(ctx.control, 0)

    def _update(self, caller: Caller, capacity: int) -> None:
        box = caller.call(
            "WorkerUpdate",
            CHECK_TIMEOUT,
            worker_id="ws-w",
            host="10.0.0.1",
            port=9000,
            capacity=capacity,
            pool=self.POOL,
        )
        if box.get(b"accepted") != b"True":
            raise RuntimeError(f"update not accepted: {box!r}")

    def attack(self, ctx: Context) -> Outcome:
        calls = 2000
        share = ctx.defaults["max-waiting-per-connection"]
        server = ctx.server
        first = Conn(server.frontend)
        parser = BoxParser()
        answers: List[Box] = []
        defects: List[str] = []
        details: Dict[str, Any] = {"calls": calls, "share": share}
        try:
            first.queue(
                b"".join(
                    call_box("NextWorker", b"a%d" % n, pool=self.POOL, timeout=30.0)
                    for n in range(calls)
                )
            )
            # The calls beyond the share are answered at once; wait for them.
            deadline = time.monotonic() + ctx.seconds(3.0, 1.5)
            while time.monotonic() < deadline and not first.closed:
                first.flush()
                answers += parser.feed(first.read(keep=True))
                if len(answers) >= calls - share and not first.pending():
                    time.sleep(0.1)  # and any more that come
                    answers += parser.feed(first.read(keep=True))
                    break
                time.sleep(0.02)
            codes: Dict[str, int] = {}
            for box in answers:
                code = (error_code(box) or b"answered").decode()
                codes[code] = codes.get(code, 0) + 1
            waiting_first = ctx.control.stats()["waiting"]
            overloaded = codes.get("OVERLOADED", 0)
            details.update(first_answers=codes, waiting_after_first=waiting_first)
            if first.closed:
                defects.append("the first connection was closed by the server")
            if overloaded < calls - share:
                defects.append(
                    f"{overloaded:,} of {calls:,} calls from one connection got OVERLOADED "
                    f"({waiting_first:,} wait; share {share:,})"
                )
            second = self._second(ctx, waiting_first, details)
            defects += second
        finally:
            first.close(reset=True)
        return Outcome(
            volume=f"{calls + 1:,} calls",
            measured=(
                f"first connection: {details['first_answers'].get('OVERLOADED', 0):,} OVERLOADED, "
                f"{details['waiting_after_first']:,} waiting; second: "
                f"{details.get('second_answer', 'no answer')}"
            ),
            defects=defects,
            details=details,
        )

    def _second(self, ctx: Context, waiting_first: int, details: Dict[str, Any]) -> List[str]:
        """
        The second connection's call: it must wait, then get the worker.
        """
        defects: List[str] = []
        with Caller(ctx.server.frontend) as second:
            second.send(call_box("NextWorker", b"b1", pool=self.POOL, timeout=30.0))
            early: Optional[Box] = None
            with contextlib.suppress(CallFailed):
                early = second.answer(b"b1", 1.0)
            waiting = ctx.control.stats()["waiting"]
            details["waiting_with_second"] = waiting
            if early is not None:
                code = (error_code(early) or b"answered").decode()
                details["second_answer"] = code
                return [f"the second connection's call was answered {code} at once"]
            if waiting != waiting_first + 1:
                defects.append(f"Stats waiting {waiting_first} -> {waiting} with the second call")
            self._update(ctx.control, waiting)  # a slot for every waiting call
            try:
                box = second.answer(b"b1", 5.0)
                answer = (error_code(box) or box.get(b"worker_id", b"?")).decode()
            except CallFailed as e:
                answer = f"no answer ({e})"
            details["second_answer"] = answer
            if answer != "ws-w":
                defects.append(f"the second connection's waiting call got {answer}")
        return defects
