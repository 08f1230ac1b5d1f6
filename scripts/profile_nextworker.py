"""
In-process CPU cost of the front-end protocol per NextWorker: feeds pipelined,
pre-encoded NextWorker boxes to one connection (no sockets, no reactor) and
reports microseconds of CPU per call, for the fast path and Twisted's generic
path.  For profiling: `--profile` runs pyinstrument over the fast path
(`pip install -e ".[profile]"`).

    python scripts/profile_nextworker.py --workers 100000 --calls 200000
"""

from __future__ import annotations

import argparse
import time
from typing import Any, List

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from amp_dispatch.admin import Metrics
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport


class _NullTransport(StringTransport):
    def write(self, data: bytes) -> None:
        pass


def _box(tag: int) -> bytes:
    hex_tag = b"%x" % tag
    return (
        b"\x00\x08_command\x00\x0aNextWorker\x00\x04_ask"
        + len(hex_tag).to_bytes(2, "big")
        + hex_tag
        + b"\x00\x00"
    )


def measure(fast_path: bool, workers: int, calls: int, batch: int) -> float:
    clock = Clock()
    store = open_memory_store(clock)
    for i in range(workers):
        store.update(
            WorkerReport(f"worker-{i}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 9000, 10**9)
        )
    # Counted as the server counts (its metrics are the listeners' hook).
    served = build_listeners(store, clock, fast_path=fast_path, hook=Metrics(clock, store))
    protocol: Any = served.frontend.factory.buildProtocol(None)
    protocol.makeConnection(_NullTransport())
    chunks: List[bytes] = [
        b"".join(_box(n) for n in range(start, start + batch)) for start in range(1, calls, batch)
    ]
    started = time.process_time()
    for chunk in chunks:
        protocol.dataReceived(chunk)
    used = time.process_time() - started
    return used / (len(chunks) * batch) * 1e6


def _update_box(tag: int, worker: int) -> bytes:
    def pair(key: bytes, value: bytes) -> bytes:
        return len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value

    return (
        pair(b"_ask", b"%x" % tag)
        + pair(b"_command", b"WorkerUpdate")
        + pair(b"capacity", b"%d" % (1000 + tag % 7))
        + pair(b"host", b"10.0.0.1")
        + pair(b"port", b"9000")
        + pair(b"worker_id", b"worker-%d" % worker)
        + b"\x00\x00"
    )


def measure_updates(fast_path: bool, workers: int, calls: int, batch: int) -> float:
    clock = Clock()
    store = open_memory_store(clock)
    # Counted as the server counts (its metrics are the listeners' hook).
    served = build_listeners(store, clock, fast_path=fast_path, hook=Metrics(clock, store))
    protocol: Any = served.scheduler.factory.buildProtocol(None)
    protocol.makeConnection(_NullTransport())
    for start in range(0, workers, batch):
        protocol.dataReceived(b"".join(_update_box(n, n) for n in range(start, start + batch)))
    chunks = [
        b"".join(_update_box(n, n % workers) for n in range(start, start + batch))
        for start in range(0, calls, batch)
    ]
    started = time.process_time()
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return (time.process_time() - started) / (len(chunks) * batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=16, help="boxes per read")
    parser.add_argument("--generic", action="store_true", help="also the generic path")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the fast path")
    options = parser.parse_args()
    from amp_dispatch.cli._logging import configure

    configure("json", "warning")  # as `amp-dispatch serve --log-level warning`
    if options.profile:
        from pyinstrument import Profiler

        with Profiler() as profiler:
            measure(True, options.workers, options.calls, options.batch)
        profiler.print()
    fast = measure(True, options.workers, options.calls, options.batch)
    print(f"fast path: {fast:.2f} us CPU per NextWorker ({options.workers} workers)")
    updates = measure_updates(True, options.workers, options.calls // 4, options.batch)
    print(f"fast path: {updates:.2f} us CPU per WorkerUpdate")
    if options.generic:
        generic = measure(False, options.workers, options.calls // 4, options.batch)
        print(f"generic path: {generic:.2f} us CPU per NextWorker")
        generic = measure_updates(False, options.workers, options.calls // 8, options.batch)
        print(f"generic path: {generic:.2f} us CPU per WorkerUpdate")


if __name__ == "__main__":
    main()
