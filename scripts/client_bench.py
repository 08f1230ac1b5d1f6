"""
How fast a Python front end gets workers through L{FrontendClient}, from one
process: calls/s with C concurrent C{next_worker} calls, and latency at one
call in flight.  Optionally the same through txredisapi against Redis (EVALSHA
of a sorted-set "next worker" script), for comparison.

    python scripts/client_bench.py [--concurrency 64] [--duration 5] [--compare-redis]

Starts C{amp-dispatch serve} (this interpreter unless C{--server-python}) on
free loopback ports, and C{redis-server} with C{--compare-redis}; the servers
are pinned to one core and this process to another when C{taskset} exists.
Everything runs on loopback and stops on its own: bounded times and counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import structlog
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater, react

REDIS_KEY = "amp-dispatch-bench:workers"
REDIS_SCRIPT = (
    "local r = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES'); "
    "if #r == 0 or tonumber(r[2]) <= 0 then return nil end; "
    "redis.call('ZINCRBY', KEYS[1], -1, r[1]); return r[1]"
)
CAPACITY = 1_000_000_000

Call = Callable[[], "Deferred[Any]"]


def _taskset(core: int) -> List[str]:
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return []
    return [taskset, "-c", str(core)]


def _pin_self(core: int) -> bool:
    taskset = shutil.which("taskset")
    if taskset is None or (os.cpu_count() or 1) < 2:
        return False
    subprocess.run(
        [taskset, "-pc", str(core), str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_dispatcher(python: str, core: int) -> Tuple[subprocess.Popen[bytes], int, int]:
    command = [
        *_taskset(core),
        python,
        "-m",
        "amp_dispatch",
        "serve",
        "--frontend",
        "tcp:0:interface=127.0.0.1",
        "--scheduler",
        "tcp:0:interface=127.0.0.1",
        "--log-format",
        "json",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ports: Dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(ports) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "listening":
            ports[event["role"]] = int(event["port"])
    if len(ports) < 2:
        proc.kill()
        raise SystemExit("amp-dispatch serve did not start")
    # Keep reading its log so that it never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, ports["frontend"], ports["scheduler"]


def _start_redis(core: int) -> Tuple[subprocess.Popen[bytes], int]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server")
    port = _free_port()
    command = [
        *_taskset(core),
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _throughput(
    reactor: Any, call: Call, concurrency: int, warmup: float, duration: float
) -> Dict[str, float]:
    """
    C{concurrency} closed loops of C{call} (each sends its next call when its
    last is answered): calls/s and this process's CPU per call over
    C{duration} seconds, after C{warmup} seconds.
    """
    state = {"count": 0, "running": True}
    failures: List[Any] = []

    def loop() -> Deferred[None]:
        done: Deferred[None] = Deferred()

        def answered(result: object) -> None:
            state["count"] += 1
            if state["running"]:
                call().addCallbacks(answered, failed)
            else:
                done.callback(None)

        def failed(failure: Any) -> None:
            failures.append(failure)
            done.callback(None)

        call().addCallbacks(answered, failed)
        return done

    finished = [loop() for _ in range(concurrency)]
    await deferLater(reactor, warmup, lambda: None)
    count0 = state["count"]
    cpu0 = os.times()
    t0 = time.perf_counter()
    await deferLater(reactor, duration, lambda: None)
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    calls = state["count"] - count0
    state["running"] = False
    for d in finished:
        await d
    if failures:
        failures[0].raiseException()
    cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    return {
        "calls_per_s": calls / elapsed,
        "client_cpu_us_per_call": cpu / max(calls, 1) * 1e6,
        "client_cpu_share": cpu / elapsed,
        "calls": calls,
    }


async def _latency(call: Call, count: int, limit: float) -> Dict[str, float]:
    """
    Latency of C{call} at one call in flight: C{count} calls (fewer if
    C{limit} seconds run out), after a warmup.
    """
    perf_counter = time.perf_counter
    for _ in range(min(count, 2000)):
        await call()
    samples: List[float] = []
    stop_at = perf_counter() + limit
    for _ in range(count):
        t = perf_counter()
        await call()
        now = perf_counter()
        samples.append(now - t)
        if now > stop_at:
            break
    samples.sort()

    def at(q: float) -> float:
        return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "calls": len(samples)}


def _show(label: str, throughput: Dict[str, float], latency: Dict[str, float]) -> None:
    print(
        f"{label:<32} {throughput['calls_per_s']:>10,.0f} calls/s"
        f"  {throughput['client_cpu_us_per_call']:6.2f} us client CPU/call"
        f" ({throughput['client_cpu_share']:4.0%} of a core)"
        f"  | one in flight: p50 {latency['p50_ms']:.3f} ms  p99 {latency['p99_ms']:.3f} ms",
        flush=True,
    )


async def _bench_dispatcher(reactor: Any, options: argparse.Namespace) -> Dict[str, Any]:
    from amp_dispatch.client import FrontendClient, SchedulerClient

    proc, frontend_port, scheduler_port = _start_dispatcher(options.server_python, 0)
    try:
        scheduler = SchedulerClient(reactor, f"tcp:127.0.0.1:{scheduler_port}")
        scheduler.start()
        for i in range(options.workers):
            await scheduler.update(f"w{i}", "127.0.0.1", 10000 + i, CAPACITY)
        client = FrontendClient(reactor, f"tcp:127.0.0.1:{frontend_port}")
        client.start()
        await client.next_worker()
        throughput = await _throughput(
            reactor, client.next_worker, options.concurrency, options.warmup, options.duration
        )
        latency = await _latency(client.next_worker, options.latency_calls, options.duration)
        await client.stop()
        await scheduler.stop()
    finally:
        _stop(proc)
    _show(f"FrontendClient (C={options.concurrency})", throughput, latency)
    return {"throughput": throughput, "latency": latency}


async def _bench_redis(reactor: Any, options: argparse.Namespace) -> Dict[str, Any]:
    try:
        import txredisapi
    except ImportError:
        raise SystemExit(
            f"txredisapi is missing: {sys.executable} -m pip install txredisapi"
        ) from None
    proc, port = _start_redis(0)
    try:
        redis = await txredisapi.Connection("127.0.0.1", port, reconnect=False)
        sha = await redis.script_load(REDIS_SCRIPT)
        members: Dict[str, float] = {}
        for i in range(options.workers):
            members[f"w{i}"] = float(CAPACITY)
        await redis.delete(REDIS_KEY)
        await redis.execute_command(
            "ZADD", REDIS_KEY, *sum(((s, m) for m, s in members.items()), ())
        )

        def call() -> Deferred[Any]:
            d: Deferred[Any] = redis.evalsha(sha, keys=[REDIS_KEY])
            return d

        first = await call()
        assert first is not None, "the Redis script answered nil"
        throughput = await _throughput(
            reactor, call, options.concurrency, options.warmup, options.duration
        )
        latency = await _latency(call, options.latency_calls, options.duration)
        await redis.disconnect()
    finally:
        _stop(proc)
    _show(f"txredisapi -> Redis (C={options.concurrency})", throughput, latency)
    return {"throughput": throughput, "latency": latency}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--latency-calls", type=int, default=20_000, help="calls at one in flight")
    parser.add_argument("--workers", type=int, default=100, help="workers registered")
    parser.add_argument("--server-python", default=sys.executable, help="runs the dispatcher")
    parser.add_argument("--compare-redis", action="store_true", help="also txredisapi -> Redis")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    options = parser.parse_args(argv)
    # The clients log each connection made and lost: not wanted among the results.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    pinned = _pin_self(1)
    print(
        f"client: {sys.implementation.name} {sys.version.split()[0]}, "
        f"server: {options.server_python}, "
        f"{'server on core 0, client on core 1' if pinned else 'not pinned'}",
        flush=True,
    )

    async def run(reactor: Any) -> None:
        results = {"frontend": await _bench_dispatcher(reactor, options)}
        if options.compare_redis:
            results["redis"] = await _bench_redis(reactor, options)
            ratio = (
                results["frontend"]["throughput"]["calls_per_s"]
                / results["redis"]["throughput"]["calls_per_s"]
            )
            print(f"FrontendClient / txredisapi calls/s: {ratio:.2f}x", flush=True)
        if options.json:
            print(json.dumps(results), flush=True)

    react(lambda reactor: ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
