"""
The over-dispatch count of the shared-store systems: workers of small
capacities in a pool of their own, then twice as many C{NextWorker} calls as
their slots in all, pipelined at once over connections spread across every
replica's front end, each answer counted against the worker it names.
Standard library only (run like the load generator):

    pypy3 -m amp_bench.overdispatch '<JSON spec>'

C{spec}: C{host}, C{ports} (the replicas' front ends), C{sched_port} (one
replica's scheduler listener), C{pool}, C{workers}, C{conns}, C{timeout}
(seconds, bound of the whole count).  Prints one JSON object: the slots
registered, the answers per outcome, and the workers answered more often
than their capacity (C{over_workers}, C{over_answers}: zero when nothing was
over-dispatched).
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from typing import Any, Dict, List, Tuple

from . import wire

Box = Dict[bytes, bytes]


def boxes(buf: bytes) -> Tuple[List[Box], bytes]:
    """
    The whole AMP boxes at the start of C{buf}, and the rest.
    """
    out: List[Box] = []
    i = 0
    end = len(buf)
    while True:
        start = i
        box: Box = {}
        while i + 2 <= end:
            klen = (buf[i] << 8) | buf[i + 1]
            if klen == 0:
                i += 2
                out.append(box)
                break
            kend = i + 2 + klen
            if kend + 2 > end:
                return out, buf[start:]
            vend = kend + 2 + ((buf[kend] << 8) | buf[kend + 1])
            if vend > end:
                return out, buf[start:]
            box[buf[i + 2 : kend]] = buf[kend + 2 : vend]
            i = vend
        else:
            return out, buf[start:]


def capacity_of(n: int) -> int:
    return 1 + n % 8


def worker_name(n: int) -> bytes:
    return b"drain%06d" % (n,)


def _exchange(sock: socket.socket, requests: List[bytes], deadline: float) -> List[Box]:
    """
    Send C{requests} on blocking C{sock} and read as many answers.
    """
    sock.sendall(b"".join(requests))
    answers: List[Box] = []
    rest = b""
    while len(answers) < len(requests):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the dispatcher closed the connection")
        got, rest = boxes(rest + data)
        answers += got
    return answers


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    host = spec["host"]
    pool = spec["pool"].encode()
    workers = int(spec["workers"])
    conns = int(spec["conns"])
    ports: List[int] = spec["ports"]
    deadline = time.monotonic() + float(spec["timeout"])
    capacity = {worker_name(n): capacity_of(n) for n in range(workers)}
    slots = sum(capacity.values())

    with socket.create_connection((host, spec["sched_port"]), timeout=10) as sched:
        updates = [
            wire.amp_box(
                [
                    (b"_command", b"WorkerUpdate"),
                    (b"_ask", wire.amp_tag(n)),
                    (b"worker_id", worker_name(n)),
                    (b"host", wire.worker_host(n)),
                    (b"port", b"%d" % (wire.WORKER_PORT,)),
                    (b"capacity", b"%d" % (capacity_of(n),)),
                    (b"pool", pool),
                ]
            )
            for n in range(workers)
        ]
        refused = [a for a in _exchange(sched, updates, deadline) if b"_error" in a]
        if refused:
            raise RuntimeError(f"{len(refused)} drain registrations failed: {refused[0]!r}")

    # Twice the slots, spread over the connections (and so the replicas).
    calls = 2 * slots
    socks = [
        socket.create_connection((host, ports[i % len(ports)]), timeout=10) for i in range(conns)
    ]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    share = [calls // conns + (1 if i < calls % conns else 0) for i in range(conns)]
    for s, count in zip(socks, share):
        s.sendall(
            b"".join(
                wire.amp_box(
                    [(b"_command", b"NextWorker"), (b"_ask", wire.amp_tag(k)), (b"pool", pool)]
                )
                for k in range(count)
            )
        )
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    left = dict(enumerate(share))
    rest: Dict[int, bytes] = dict.fromkeys(left, b"")
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    answered: Dict[bytes, int] = {}
    by_replica = [0] * len(ports)
    codes: Dict[str, int] = {}
    while any(left.values()) and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            i = key.data
            data = socks[i].recv(1 << 16)
            if not data:
                raise ConnectionError("the dispatcher closed a front-end connection")
            got, rest[i] = boxes(rest[i] + data)
            left[i] -= len(got)
            for box in got:
                if b"_error" in box:
                    code = box.get(b"_error_code", b"?").decode()
                    codes[code] = codes.get(code, 0) + 1
                else:
                    wid = box[b"worker_id"]
                    answered[wid] = answered.get(wid, 0) + 1
                    by_replica[i % len(ports)] += 1
    for s in socks:
        s.close()
    unknown = [w for w in answered if w not in capacity]
    over = {w: n - capacity.get(w, 0) for w, n in answered.items() if n > capacity.get(w, 0)}
    ok = sum(answered.values())
    return {
        "workers": workers,
        "slots": slots,
        "calls": calls,
        "answered": ok,
        "errors": codes,
        "unanswered": sum(left.values()),
        "by_replica": by_replica,
        "unknown_workers": len(unknown),
        "over_workers": len(over),
        "over_answers": sum(over.values()),
        "ok": not over and not unknown and ok == slots,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = run(spec)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
