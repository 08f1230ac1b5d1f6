"""
What a Twisted Python front end gets: C{NextWorker} through a real client
library, closed loop, from one process.

    python -m amp_bench.pyclient '<JSON spec>'

C{spec["client"]}: C{"txredisapi"} (EVALSHA of the next-worker script on
Redis) or C{"frontend"} (amp-dispatch's C{FrontendClient}).  C{conns}
connections, each with C{depth} calls in flight (a call is sent as soon as the
previous one of its slot is answered), for C{warmup} then C{duration} seconds.
Prints one JSON object on stdout, like the load generator, with the client
process's own CPU per call beside the server's.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater, react

from .loadgen import Progress, _percentiles
from .procstat import CLOCK_TICKS, busy_ticks, cpu_ticks
from .wire import NEXT_WORKER_SHA, REDIS_KEY

Spec = Dict[str, Any]
Call = Callable[[], Awaitable[Any]]


async def _connect(reactor: Any, spec: Spec) -> List[Call]:
    calls: List[Call] = []
    if spec["client"] == "txredisapi":
        import txredisapi

        key = REDIS_KEY.decode()
        for _ in range(spec["conns"]):
            redis = await txredisapi.Connection(
                spec["host"], spec["port"], reconnect=False, convertNumbers=False
            )

            def evalsha(redis: Any = redis) -> Any:
                return redis.evalsha(NEXT_WORKER_SHA, keys=[key])

            calls.append(evalsha)
    else:
        from amp_dispatch.client import FrontendClient

        for _ in range(spec["conns"]):
            client = FrontendClient(reactor, f"tcp:{spec['host']}:{spec['port']}")
            client.start()
            await client.next_worker()  # connected, and answering
            calls.append(client.next_worker)
    return calls


async def _run(reactor: Any, spec: Spec) -> Dict[str, Any]:
    progress = Progress(str(spec.get("label", spec["client"])), bool(spec.get("progress", True)))
    calls = await _connect(reactor, spec)
    warmup = float(spec["warmup"])
    duration = float(spec["duration"])
    server_pid = int(spec["server_pid"])
    perf_counter = time.perf_counter
    state: Dict[str, Any] = {"measuring": False, "stop": False, "calls": 0, "nil": 0}
    lat: List[float] = []

    async def loop(call: Call) -> None:
        while not state["stop"]:
            t = perf_counter()
            answer = await call()
            if state["measuring"]:
                lat.append(perf_counter() - t)
                state["calls"] += 1
                if answer is None:
                    state["nil"] += 1

    depth = int(spec["depth"])
    loops = [ensureDeferred(loop(call)) for call in calls for _ in range(depth)]
    t0 = perf_counter()
    while perf_counter() - t0 < warmup:
        progress.show(perf_counter(), f"warming up {perf_counter() - t0:4.1f}/{warmup:g} s")
        await deferLater(reactor, 0.1, lambda: None)
    state["measuring"] = True
    t_start = perf_counter()
    ticks0 = cpu_ticks(server_pid)
    own0 = os.times()
    busy0 = busy_ticks()
    while perf_counter() - t_start < duration:
        now = perf_counter()
        rate = state["calls"] / max(now - t_start, 1e-9)
        progress.show(now, f"closed: {now - t_start:4.1f}/{duration:g} s, {rate:,.0f} calls/s")
        await deferLater(reactor, 0.1, lambda: None)
    state["measuring"] = False
    elapsed = perf_counter() - t_start
    ticks = cpu_ticks(server_pid) - ticks0
    own1 = os.times()
    busy = busy_ticks() - busy0
    own = own1.user + own1.system - own0.user - own0.system
    count = state["calls"]
    state["stop"] = True
    waited: Deferred[Any] = gatherResults(loops)
    await waited
    progress.show(0, "", force=True)
    result: Dict[str, Any] = {
        "mode": "closed",
        "client": spec["client"],
        "conns": spec["conns"],
        "depth": depth,
        "calls": count,
        "seconds": elapsed,
        "calls_per_s": count / elapsed,
        "server_cpu_s": ticks / CLOCK_TICKS,
        "server_cpu_us_per_call": ticks / CLOCK_TICKS / max(count, 1) * 1e6,
        "load_cpu_us_per_call": own / max(count, 1) * 1e6,
        "load_cpu_share": own / elapsed,
        "server_cpu_share": ticks / CLOCK_TICKS / elapsed,
        "machine_cpu_share": busy / CLOCK_TICKS / elapsed,
        "errors": {"nil (no worker)": state["nil"]} if state["nil"] else {},
        "loadgen_python": sys.version.split()[0],
    }
    result.update(_percentiles(lat))
    return result


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec: Spec = json.loads(args[0])

    async def run(reactor: Any) -> None:
        result = await _run(reactor, spec)
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
        # Leave without closing the clients politely: the process ends here.
        os._exit(0)

    react(lambda reactor: ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
