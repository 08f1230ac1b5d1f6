"""
The front end's client: asks the dispatcher which worker takes the next job.

C{next_worker} is the hot call of a front end: on a live connection it is a
fast call (see L{_calls}), its box pre-encoded (the arguments of
each pool and timeout encoded once, by the schema's own argument types) and
its answer read straight into a L{Worker}.  Without a connection, and for
arguments the schema refuses, it goes the generic way, with the same results.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

from amp_dispatch_commands import InvalidArgument, NextWorker
from twisted.internet.defer import Deferred
from twisted.protocols import amp

from .._records import Worker
from ..protocol._framing import END, Box, encode_pair
from ._arguments import Answer
from ._base import DispatcherClient
from ._calls import FastCommand


class FrontendClient(DispatcherClient):
    """
    A client of the dispatcher's front-end listener.

    Keeps one connection up (L{start}, L{stop}) with backoff.  Every call has
    a timeout of C{call_timeout} seconds (plus the call's own C{timeout} for
    L{next_worker}) and fails with L{DispatcherUnavailable} when no connection
    comes within it or the connection is lost before the answer,
    L{CallTimedOut} when the answer does not come within it.

    Built as L{DispatcherClient} is, C{endpoint} the front-end listener
    (e.g. C{"tcp:127.0.0.1:8750"}).
    """

    _role = "frontend"

    def next_worker(
        self, pool: Optional[str] = None, timeout: Optional[float] = None
    ) -> Deferred[Worker]:
        """
        Which worker takes my next job?  Takes one of its free slots.

        @param pool: the pool (the dispatcher's default pool if C{None}).
        @param timeout: seconds the dispatcher may wait for a free slot when
            none is free now (C{None} or 0: do not wait).
        @return: fires with the L{Worker}, or fails with L{NoWorkerAvailable},
            L{Overloaded}, L{InvalidArgument}, L{DispatcherUnavailable} or
            L{CallTimedOut}.
        """
        if pool is None and timeout is None:
            body: Optional[bytes] = _PLAIN
        else:
            body = _body(pool, timeout)
        if body is not None:
            answered = self._connection.fast_call(_FAST_NEXT_WORKER, body, timeout)
            if answered is not None:
                return answered
        generic = self._connection.call(
            NextWorker, {"pool": pool, "timeout": timeout}, wait=timeout
        )
        return generic.addCallback(_worker)


def _worker(answer: Answer) -> Worker:
    return Worker(answer["worker_id"], answer["host"], answer["port"])


# Workers already answered, by their values on the wire (a dispatcher answers
# the same few workers over and over; bounded all the same).
_workers: Dict[Tuple[Optional[bytes], Optional[bytes], Optional[bytes]], Worker] = {}
_WORKERS_KEPT = 4096


def _parse_worker(box: Box) -> Worker:
    """
    The L{Worker} of a C{NextWorker} answer box: one seen before, or one the
    schema parses (as the generic path does, failing as it does).
    """
    key = (box.get(b"worker_id"), box.get(b"host"), box.get(b"port"))
    worker = _workers.get(key)
    if worker is None:
        # What NextWorker.parseResponse does (amp.Unicode, amp.Integer), in
        # a fraction of its time: the same values, the same exceptions.
        worker = Worker(
            box[b"worker_id"].decode("utf-8"), box[b"host"].decode("utf-8"), int(box[b"port"])
        )
        if len(_workers) >= _WORKERS_KEPT:
            _workers.clear()
        _workers[key] = worker
    return worker


_FAST_NEXT_WORKER = FastCommand(NextWorker, _parse_worker)
_PLAIN = _FAST_NEXT_WORKER.prefix + END
_ARGUMENTS: Dict[bytes, amp.Argument] = dict(NextWorker.arguments)

# Encoded boxes (after the tag) by their arguments, for valid arguments only.
_bodies: Dict[Tuple[Optional[str], Optional[float]], bytes] = {}
_BODIES_KEPT = 1024


def _body(pool: Optional[str], timeout: Optional[float]) -> Optional[bytes]:
    """
    The box of a C{NextWorker} call after its tag, or C{None} when the schema
    refuses an argument (the generic path then fails the call with its
    L{InvalidArgument}).
    """
    # Only exact types are looked up: True == 1 == 1.0, but True is refused.
    if not (pool is None or type(pool) is str) or not (
        timeout is None or type(timeout) is float or type(timeout) is int
    ):
        return None
    key = (pool, timeout)
    body = _bodies.get(key)
    if body is None:
        parts = [_FAST_NEXT_WORKER.prefix]
        encoded: Dict[bytes, bytes] = {}
        try:
            for name, value in ((b"pool", pool), (b"timeout", timeout)):
                _ARGUMENTS[name].toBox(name, encoded, {name.decode("ascii"): value}, None)
        except InvalidArgument:
            return None
        parts.extend(encode_pair(name, value) for name, value in encoded.items())
        parts.append(END)
        body = b"".join(parts)
        if timeout == 0 and math.copysign(1.0, timeout) < 0:
            return body  # -0.0 is sent as such, but looked up as 0.0
        if len(_bodies) >= _BODIES_KEPT:
            _bodies.clear()
        _bodies[key] = body
    return body
