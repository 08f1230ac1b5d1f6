"""
Runs pre-encoded calls through one listener's protocol, in process (no
sockets, no timing), for counting instructions with valgrind, which gives
the same count for the same build and inputs whatever else the machine does:

    valgrind --tool=callgrind python scripts/count_calls.py nextworker 100000
    valgrind --tool=callgrind python scripts/count_calls.py nextworker 0
    valgrind --tool=callgrind python scripts/count_calls.py update 20000
    valgrind --tool=callgrind python scripts/count_calls.py update 20000 --register-only

The difference of each pair of totals, divided by the calls, is the
instructions per call (for C{nextworker}, building the calls' bytes
included).  C{nextworker}: argument-less
calls in reads of 16 (the bench's closed loop), 1,000 workers; C{update}:
C{WorkerUpdate}s of existing workers in reads of 256 (as the bench registers
them), after as many new workers.  Calls are counted through L{Metrics},
as the server counts them.  Run it in a checkout of each build to compare
them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, List

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

sys.path.insert(0, str(Path(__file__).parent))

from amp_bench import wire

from amp_dispatch.admin import Metrics
from amp_dispatch.cli._logging import configure
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport


class _NullTransport(StringTransport):
    def write(self, data: bytes) -> None:
        pass


def _connect(factory: Any) -> Any:
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(_NullTransport())
    return protocol


def next_workers(calls: int) -> None:
    clock = Clock()
    store = open_memory_store(clock)
    for i in range(1000):
        store.update(WorkerReport(f"w{i}", "10.0.0.1", 9000, 10**9))
    protocol = _connect(build_listeners(store, clock, hook=Metrics(clock, store)).frontend.factory)
    boxes, _ = wire.next_worker_requests()
    chunks: List[bytes] = [
        b"".join(boxes[(start + i) % len(boxes)] for i in range(16))
        for start in range(0, calls, 16)
    ]
    for chunk in chunks:
        protocol.dataReceived(chunk)
        clock.advance(0)


def updates(calls: int, register_only: bool) -> None:
    clock = Clock()
    store = open_memory_store(clock)
    protocol = _connect(build_listeners(store, clock, hook=Metrics(clock, store)).scheduler.factory)
    chunks: List[bytes] = [
        b"".join(
            wire.worker_update(wire.amp_tag(n), n, 1_000_000)
            for n in range(start, min(calls, start + 256))
        )
        for start in range(0, calls, 256)
    ]
    for chunk in chunks:  # registering: not what is counted
        protocol.dataReceived(chunk)
        clock.advance(0)
    if register_only:
        return
    for chunk in chunks:
        protocol.dataReceived(chunk)
        clock.advance(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["nextworker", "update"])
    parser.add_argument("calls", type=int)
    parser.add_argument(
        "--register-only",
        action="store_true",
        help="update: register the workers, send no update (the baseline)",
    )
    options = parser.parse_args()
    configure("json", "warning")
    if options.what == "nextworker":
        next_workers(options.calls)
    else:
        updates(options.calls, options.register_only)


if __name__ == "__main__":
    main()
