"""
Stock Twisted AMP servers of the amp-dispatch schema, for comparison: what an
C{amp.AMP} with a C{CommandLocator} costs, with nothing of amp-dispatch's own.

    python -m amp_bench.stock_server noop|heap

- C{noop}: C{NextWorker} answers a constant worker, C{WorkerUpdate} accepts
  and forgets: the ceiling stock Twisted allows;
- C{heap}: a plain dict + heap queue (most free slots first, round robin among
  equals by a counter, lazy deletion of stale heap entries).

Listens on two free loopback ports (front end and scheduler, both serving
every command) and prints, like C{amp-dispatch serve --log-format json}, one
JSON C{listening} line per listener on stdout.
"""

from __future__ import annotations

import heapq
import itertools
import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from amp_dispatch_commands import NextWorker, NoWorkerAvailable, WorkerUpdate
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory
from twisted.protocols import amp

reactor: Any = _reactor
Answer = Dict[str, Any]


class NoopLocator(amp.CommandLocator):
    @NextWorker.responder
    def next_worker(self, pool: Optional[str] = None, timeout: Optional[float] = None) -> Answer:
        return {"worker_id": "w0000000", "host": "10.0.0.0", "port": 9000}

    @WorkerUpdate.responder
    def worker_update(
        self,
        worker_id: str,
        host: str,
        port: int,
        capacity: int,
        pool: Optional[str] = None,
        seq: Optional[int] = None,
        ttl: Optional[float] = None,
    ) -> Answer:
        return {"accepted": True}


class HeapQueue:
    """
    Workers by id (free slots, host, port, version) and a heap of
    (-free, last answered, version, id); a heap entry whose version is not its
    worker's is stale and skipped.
    """

    def __init__(self) -> None:
        self.workers: Dict[str, List[Any]] = {}
        self.heap: List[Tuple[int, int, int, str]] = []
        self.counter = itertools.count()

    def update(self, worker_id: str, host: str, port: int, capacity: int) -> None:
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = [capacity, host, port, 0, -1]
        else:
            worker[0] = capacity
            worker[1] = host
            worker[2] = port
            worker[3] += 1
        heapq.heappush(self.heap, (-capacity, worker[4], worker[3], worker_id))
        if len(self.heap) > 2 * len(self.workers) + 1024:
            self.heap = [(-w[0], w[4], w[3], i) for i, w in self.workers.items()]
            heapq.heapify(self.heap)

    def next(self) -> Answer:
        heap = self.heap
        while heap:
            minus_free, _, version, worker_id = heap[0]
            worker = self.workers[worker_id]
            if worker[3] != version:
                heapq.heappop(heap)
                continue
            if minus_free >= 0:
                break
            worker[0] -= 1
            worker[3] += 1
            worker[4] = next(self.counter)
            heapq.heapreplace(heap, (-worker[0], worker[4], worker[3], worker_id))
            return {"worker_id": worker_id, "host": worker[1], "port": worker[2]}
        raise NoWorkerAvailable("no worker of the pool has a free slot")


class HeapLocator(amp.CommandLocator):
    def __init__(self, queue: HeapQueue) -> None:
        self.queue = queue

    @NextWorker.responder
    def next_worker(self, pool: Optional[str] = None, timeout: Optional[float] = None) -> Answer:
        return self.queue.next()

    @WorkerUpdate.responder
    def worker_update(
        self,
        worker_id: str,
        host: str,
        port: int,
        capacity: int,
        pool: Optional[str] = None,
        seq: Optional[int] = None,
        ttl: Optional[float] = None,
    ) -> Answer:
        self.queue.update(worker_id, host, port, capacity)
        return {"accepted": True}


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    variant = args[0] if args else "noop"
    factory: Factory
    if variant == "noop":
        factory = Factory.forProtocol(lambda: amp.AMP(locator=NoopLocator()))
    elif variant == "heap":
        queue = HeapQueue()
        factory = Factory.forProtocol(lambda: amp.AMP(locator=HeapLocator(queue)))
    else:
        raise SystemExit(f"unknown variant {variant!r}: noop or heap")
    for role in ("frontend", "scheduler"):
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        address = port.getHost()
        line = {"event": "listening", "role": role, "host": address.host, "port": address.port}
        print(json.dumps(line), flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
