"""
The clean client: one well-behaved front end that makes serial C{NextWorker}
calls, one at a time, while an attack runs, and measures each round trip
with C{time.perf_counter}.

It runs as a process of its own (C{python -m amp_attack.clean SPEC}), so that
the attacker's loops do not hold it back (no shared interpreter lock), at a
higher priority where it may (C{nice -5} as root).  It connects and makes one
call, then waits for a line on its standard input (the attack starts), calls
until its standard input closes (or C{max_seconds}), then prints one JSON
object: the
calls answered, failed (an error answer), stalled (no answer within
C{stall_seconds}: counted at that latency, then it reconnects), reconnects,
and the latency percentiles in ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from amp_bench.loadgen import _percentiles as percentiles

from .wire import BoxParser, call_box, connect

#: The pool the clean client calls: its own worker, with a huge capacity.
CLEAN_POOL = "clean-client-pool-7f3a"
CLEAN_WORKER = "clean-client-worker"
CLEAN_CAPACITY = 1_000_000_000


@dataclass
class CleanSpec:
    """
    What the clean client does: C{port} of the front end, C{gap_ms} between
    calls, C{stall_seconds} before a call counts as stalled.
    """

    port: int
    pool: str = CLEAN_POOL
    gap_ms: float = 1.0
    stall_seconds: float = 2.0
    max_seconds: float = 900.0


def run(spec: CleanSpec, control: Any) -> Dict[str, Any]:
    """
    Connect, make one call, wait for a line on C{control} (a readable
    file), then call until C{control} is readable again (closed).
    """
    perf = time.perf_counter
    lat: List[float] = []
    answered = failed = stalled = reconnects = connect_failures = 0
    parser = BoxParser()
    first = connect(spec.port, timeout=spec.stall_seconds)
    first.sendall(call_box("NextWorker", b"0", pool=spec.pool))
    while not parser.feed(first.recv(65536)):
        pass
    sock: Optional[socket.socket] = first
    print("ready", flush=True)
    control.readline()
    tag_number = 0
    end = time.monotonic() + spec.max_seconds
    gap = spec.gap_ms / 1000
    while time.monotonic() < end:
        if select.select([control], [], [], gap)[0]:
            break
        if sock is None:
            try:
                sock = connect(spec.port, timeout=spec.stall_seconds)
                parser = BoxParser()
            except OSError:
                connect_failures += 1
                lat.append(spec.stall_seconds)
                continue
        tag_number += 1
        tag = b"%d" % (tag_number,)
        box = call_box("NextWorker", tag, pool=spec.pool)
        t0 = perf()
        deadline = t0 + spec.stall_seconds
        got: Optional[Dict[bytes, bytes]] = None
        try:
            sock.sendall(box)
            while got is None:
                left = deadline - perf()
                if left <= 0:
                    break
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                for answer in parser.feed(data):
                    if answer.get(b"_answer", answer.get(b"_error")) == tag:
                        got = answer
        except OSError:
            pass
        if got is None:
            stalled += 1
            lat.append(spec.stall_seconds)
            sock.close()
            sock = None
            reconnects += 1
            continue
        lat.append(perf() - t0)
        if b"_error" in got:
            failed += 1
        else:
            answered += 1
    if sock is not None:
        sock.close()
    result: Dict[str, Any] = {
        "warmup_calls": 1,
        "calls": len(lat),
        "answered": answered,
        "failed": failed,
        "stalled": stalled,
        "reconnects": reconnects,
        "connect_failures": connect_failures,
    }
    result.update(percentiles(lat))
    return result


class CleanClient:
    """
    The clean client's process, from the attacker's side: C{start} it,
    C{stop} it to get its result.
    """

    def __init__(self, spec: CleanSpec) -> None:
        self.spec = spec
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        """
        Start it and wait until it is connected; it measures from L{go}.
        """
        env = dict(os.environ)
        scripts = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = scripts + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amp_attack.clean", json.dumps(self.spec.__dict__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the clean client did not start")

    def go(self) -> None:
        """
        Start measuring.
        """
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self) -> Dict[str, Any]:
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=self.spec.stall_seconds + 30)
        lines = out.decode().strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"the clean client failed (exit {self.proc.returncode})")
        result: Dict[str, Any] = json.loads(lines[-1])
        return result


def main() -> None:
    spec = CleanSpec(**json.loads(sys.argv[1]))
    with contextlib.suppress(OSError):
        os.nice(-5)
    result = run(spec, sys.stdin)
    result["nice"] = os.nice(0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
