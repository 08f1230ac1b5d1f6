"""
The load generator: raw non-blocking sockets, pre-encoded requests, many calls
per system call.  Standard library only; run it under C{pypy3} where there is
one (it must be much cheaper per call than the servers it measures).

    pypy3 -m amp_bench.loadgen '<JSON spec>'

prints one JSON object (the result) on stdout and a progress line on stderr.
Modes (C{spec["mode"]}):

- C{register}: registers C{workers} workers (pipelined C{WorkerUpdate}s, or
  C{ZADD}s for Redis) and reports the server CPU per update;
- C{closed}: C{conns} connections, each keeping C{depth} C{NextWorker} calls
  in flight, for C{warmup} then C{duration} seconds;
- C{open}: C{rate} calls a second (Poisson arrivals unless C{arrivals} is
  C{"uniform"}) spread over C{conns} connections; a call's latency counts from
  its scheduled arrival, so a late generator shows as latency (and how late
  it sent is reported: C{late_p99_ms}).

With C{ports} (a list), the C{NextWorker} connections spread over those
ports in turn instead of C{port} (replicas of a shared store); with
C{cpu_pids} (name to pid), the CPU of each of those processes over the
window is reported too (C{cpu_s}, seconds by name).

Both load modes may add a WorkerUpdate (or ZADD) stream of
C{updates_per_second} on a connection of its own.  The measured window
samples the server's CPU (C{server_pid}, from /proc) at its start and end.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import selectors
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from . import wire
from .procstat import CLOCK_TICKS, busy_ticks, cpu_ticks

perf_counter = time.perf_counter
# Reads go into one buffer and are copied out at their size: a fresh 256 KiB
# buffer per read would be a large object for PyPy's GC (old generation, many
# major collections: millisecond pauses of the generator).
_RBUF = bytearray(262144)
_RVIEW = memoryview(_RBUF)


def _recv(sock: socket.socket) -> bytes:
    """
    What C{sock} has to read (C{b""} at its end); raises L{BlockingIOError}
    when nothing is there.
    """
    return _RVIEW[: sock.recv_into(_RBUF)].tobytes()


Spec = Dict[str, Any]


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class Client:
    """
    One connection sending C{NextWorker} calls; subclasses speak the protocol.
    C{queue} adds a call sent at time C{t} to the output, C{flush} writes the
    output, C{read} reads answers and appends their latencies to C{lat}.
    """

    sock: socket.socket
    wbuf: bytes
    out: List[bytes]

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.wbuf = b""
        self.out = []

    def flush(self) -> None:
        if self.out:
            data = self.wbuf + b"".join(self.out) if self.wbuf else b"".join(self.out)
            self.out = []
        elif self.wbuf:
            data = self.wbuf
        else:
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        self.wbuf = data[sent:]

    def in_flight(self) -> int:
        raise NotImplementedError

    def queue(self, t: float) -> bool:
        raise NotImplementedError

    def queue_many(self, count: int, t: float) -> None:
        raise NotImplementedError

    def read(self, now: float, lat: List[float]) -> int:
        raise NotImplementedError

    def errors(self) -> Dict[str, int]:
        raise NotImplementedError


class AmpClient(Client):
    def __init__(self, sock: socket.socket, boxes: List[bytes], tags: List[bytes]) -> None:
        super().__init__(sock)
        self.boxes = boxes
        self.tags = tags
        self.pending: Dict[bytes, float] = {}
        self.counter = 0
        self.answers = wire.AmpAnswers()

    def in_flight(self) -> int:
        return len(self.pending)

    def queue(self, t: float) -> bool:
        if len(self.pending) >= wire.TAG_MASK:
            return False
        k = self.counter & wire.TAG_MASK
        self.counter += 1
        self.out.append(self.boxes[k])
        self.pending[self.tags[k]] = t
        return True

    def queue_many(self, count: int, t: float) -> None:
        boxes = self.boxes
        tags = self.tags
        pending = self.pending
        out = self.out
        k = self.counter
        for _ in range(count):
            j = k & wire.TAG_MASK
            out.append(boxes[j])
            pending[tags[j]] = t
            k += 1
        self.counter = k

    def read(self, now: float, lat: List[float]) -> int:
        try:
            data = _recv(self.sock)
        except BlockingIOError:
            return 0
        if not data:
            raise ConnectionError("the server closed the connection")
        tags = self.answers.feed(data)
        pending = self.pending
        for tag in tags:
            lat.append(now - pending.pop(tag))
        return len(tags)

    def errors(self) -> Dict[str, int]:
        return {k.decode("utf-8", "replace"): v for k, v in self.answers.codes.items()}


class RespClient(Client):
    def __init__(self, sock: socket.socket, request: bytes) -> None:
        super().__init__(sock)
        self.request = request
        self.sent_at: List[float] = []
        self.head = 0
        self.answers = wire.RespAnswers()

    def in_flight(self) -> int:
        return len(self.sent_at) - self.head

    def queue(self, t: float) -> bool:
        self.out.append(self.request)
        self.sent_at.append(t)
        return True

    def queue_many(self, count: int, t: float) -> None:
        self.out.append(self.request * count)
        self.sent_at.extend([t] * count)

    def read(self, now: float, lat: List[float]) -> int:
        try:
            data = _recv(self.sock)
        except BlockingIOError:
            return 0
        if not data:
            raise ConnectionError("the server closed the connection")
        count = self.answers.feed(data)
        sent_at = self.sent_at
        head = self.head
        for i in range(head, head + count):
            lat.append(now - sent_at[i])
        head += count
        if head > 65536 and head * 2 > len(sent_at):
            del sent_at[:head]
            head = 0
        self.head = head
        return count

    def errors(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        if self.answers.nil:
            out["nil (no worker)"] = self.answers.nil
        if self.answers.error_count:
            out[self.answers.last_error.decode("utf-8", "replace")] = self.answers.error_count
        return out


class UpdateStream:
    """
    A connection of its own sending worker updates (amp: C{WorkerUpdate} on
    the scheduler listener; Redis: C{ZADD} of one member) at a fixed rate to
    random registered workers, restoring their full capacity.
    """

    def __init__(self, spec: Spec) -> None:
        self.amp = spec["protocol"] == "amp"
        port = spec["sched_port"] if self.amp else spec["port"]
        self.sock = _connect(spec["host"], port)
        self.rate = float(spec["updates_per_second"])
        self.workers = int(spec["workers"])
        self.capacity = int(spec["capacity"])
        self.sent = 0
        self.answered = 0
        self.wbuf = b""
        self.amp_answers = wire.AmpAnswers()
        self.resp_answers = wire.RespAnswers()
        self.rng = random.Random(7)
        self.start = 0.0

    def pump(self, now: float) -> None:
        due = int((now - self.start) * self.rate)
        if due <= self.sent:
            if self.wbuf:
                self._write(b"")
            return
        out = []
        for k in range(self.sent, due):
            n = self.rng.randrange(self.workers)
            if self.amp:
                out.append(wire.worker_update(wire.amp_tag(k), n, self.capacity))
            else:
                out.append(wire.zadd_request(n, 1, self.capacity))
        self.sent = due
        self._write(b"".join(out))

    def _write(self, data: bytes) -> None:
        data = self.wbuf + data
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        self.wbuf = data[sent:]

    def read(self) -> None:
        try:
            data = _recv(self.sock)
        except BlockingIOError:
            return
        if not data:
            raise ConnectionError("the server closed the update connection")
        if self.amp:
            self.answered += len(self.amp_answers.feed(data))
        else:
            self.answered += self.resp_answers.feed(data)

    def errors(self) -> int:
        return self.amp_answers.error_count + self.resp_answers.error_count


class Poller:
    """
    Read readiness of many sockets: C{poll} gives (fd, events) pairs, and
    C{owners} maps an fd to what was registered with it.  epoll where there
    is one (no per-event objects on the hot path), else C{selectors}.
    """

    def __init__(self) -> None:
        self.owners: Dict[int, Any] = {}
        self._epoll = getattr(select, "epoll", None)
        if self._epoll is not None:
            self._ep = self._epoll()
        else:
            self._sel = selectors.DefaultSelector()

    def register(self, sock: socket.socket, owner: Any) -> None:
        self.owners[sock.fileno()] = owner
        if self._epoll is not None:
            self._ep.register(sock.fileno(), select.EPOLLIN)
        else:
            self._sel.register(sock, selectors.EVENT_READ)

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        if self._epoll is not None:
            events: List[Tuple[int, int]] = self._ep.poll(timeout)
            return events
        return [(key.fd, mask) for key, mask in self._sel.select(timeout)]


def _percentiles(lat: List[float]) -> Dict[str, float]:
    if not lat:
        return {}
    lat.sort()
    n = len(lat)

    def at(q: float) -> float:
        return lat[min(n - 1, int(q * n))] * 1e3

    return {
        "mean_ms": sum(lat) / n * 1e3,
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": lat[-1] * 1e3,
    }


class Progress:
    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.next = 0.0

    def show(self, now: float, text: str, force: bool = False) -> None:
        if self.enabled and (force or now >= self.next):
            self.next = now + 0.5
            sys.stderr.write(f"\r\x1b[K[{self.label}] {text}")
            sys.stderr.flush()


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _named_ticks(pids: Dict[str, int]) -> Dict[str, int]:
    return {name: cpu_ticks(pid) for name, pid in pids.items()}


def _named_seconds(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, float]:
    return {name: (after[name] - before[name]) / CLOCK_TICKS for name in after}


def run_load(spec: Spec) -> Dict[str, Any]:
    """
    The C{closed} and C{open} modes.
    """
    open_loop = spec["mode"] == "open"
    conns = int(spec["conns"])
    depth = int(spec.get("depth", 1))
    warmup = float(spec["warmup"])
    duration = float(spec["duration"])
    server_pid = int(spec["server_pid"])
    named_pids: Dict[str, int] = spec.get("cpu_pids") or {}
    progress = Progress(spec.get("label", "load"), bool(spec.get("progress", True)))
    clients: List[Client] = []
    if spec["protocol"] == "amp":
        boxes, tags = wire.next_worker_requests()
        # Replicas of a shared store: the connections spread over their ports.
        ports = spec.get("ports") or [spec["port"]]
        for i in range(conns):
            port = ports[i % len(ports)]
            clients.append(AmpClient(_connect(spec["host"], port), boxes, tags))
    else:
        request = wire.evalsha_request()
        for _ in range(conns):
            clients.append(RespClient(_connect(spec["host"], spec["port"]), request))
    updates: Optional[UpdateStream] = None
    if float(spec.get("updates_per_second") or 0) > 0:
        updates = UpdateStream(spec)

    poller = Poller()
    for c in clients:
        poller.register(c.sock, c)
    if updates is not None:
        poller.register(updates.sock, updates)
    owners = poller.owners

    rate = float(spec.get("rate") or 0)
    uniform = spec.get("arrivals", "poisson") == "uniform"
    rng = random.Random(spec.get("seed", 1))
    max_in_flight = int(spec.get("max_in_flight", 200000))

    t_start = perf_counter()
    warm_end = t_start + warmup
    t_end = warm_end + duration
    if updates is not None:
        updates.start = t_start
    if not open_loop:
        for c in clients:
            c.queue_many(depth, t_start)
            c.flush()
    next_arrival = t_start
    rr = 0
    in_flight = 0
    sent = 0
    dropped = 0
    lat: List[float] = []
    late: List[float] = []
    calls = 0
    measuring = False
    window: Dict[str, Any] = {}
    interval = 1.0 / rate if rate > 0 else 0.0
    poll = poller.poll
    while True:
        if open_loop:
            now = perf_counter()
            if next_arrival <= now:
                # The calls due now go out on the next connection in turn, in
                # one write: one call usually; more (and fewer system calls
                # each) when the generator runs late, so that it catches up.
                batch = []
                c = clients[rr]
                rr += 1
                if rr == conns:
                    rr = 0
                while next_arrival <= now:
                    batch.append(next_arrival)
                    if in_flight < max_in_flight and c.queue(next_arrival):
                        in_flight += 1
                        sent += 1
                    else:
                        dropped += 1
                    next_arrival += interval if uniform else rng.expovariate(rate)
                c.flush()
                # How late the calls went out: the generator's own share of
                # the latencies.  (Recorded in the warm-up too, so that the
                # JIT has compiled the same paths when the window starts.)
                sent_at = perf_counter()
                for t in batch:
                    late.append(sent_at - t)
            wait = next_arrival - perf_counter()
            timeout = wait - 0.0015 if wait > 0.002 else 0
        else:
            timeout = 0.02
        events = poll(timeout)
        now = perf_counter()
        for fd, _ in events:
            c = owners[fd]
            if c is updates:
                updates.read()
                continue
            n = c.read(now, lat)
            if n:
                calls += n
                if open_loop:
                    in_flight -= n
                else:
                    c.queue_many(n, now)
                    c.flush()
        if updates is not None:
            updates.pump(now)
        # Writes that did not go whole (a full socket buffer) go on here.
        for c in clients:
            if c.wbuf:
                c.flush()
        if now >= warm_end:
            if not measuring:
                measuring = True
                lat = []
                calls = 0
                dropped = 0
                late = []
                window = {
                    "t": now,
                    "ticks": cpu_ticks(server_pid),
                    "own": _own_cpu(),
                    "busy": busy_ticks(),
                    "updates": updates.answered if updates is not None else 0,
                    "named": _named_ticks(named_pids),
                }
            elif now >= t_end:
                break
            progress.show(
                now,
                f"{spec['mode']}: {now - window['t']:4.1f}/{duration:g} s, "
                f"{calls / max(now - window['t'], 1e-9):,.0f} calls/s",
            )
        else:
            progress.show(now, f"{spec['mode']}: warming up {now - t_start:4.1f}/{warmup:g} s")
    ticks = cpu_ticks(server_pid)
    named = _named_ticks(named_pids)
    own = _own_cpu()
    busy = busy_ticks()
    elapsed = now - window["t"]
    errors: Dict[str, int] = {}
    for c in clients:
        for k, v in c.errors().items():
            errors[k] = errors.get(k, 0) + v
    result: Dict[str, Any] = {
        "mode": spec["mode"],
        "conns": conns,
        "depth": None if open_loop else depth,
        "offered_per_s": rate if open_loop else None,
        "arrivals": ("uniform" if uniform else "poisson") if open_loop else None,
        "calls": calls,
        "seconds": elapsed,
        "calls_per_s": calls / elapsed,
        "server_cpu_s": (ticks - window["ticks"]) / CLOCK_TICKS,
        "server_cpu_us_per_call": (ticks - window["ticks"]) / CLOCK_TICKS / max(calls, 1) * 1e6,
        "load_cpu_us_per_call": (own - window["own"]) / max(calls, 1) * 1e6,
        "load_cpu_share": (own - window["own"]) / elapsed,
        "server_cpu_share": (ticks - window["ticks"]) / CLOCK_TICKS / elapsed,
        "machine_cpu_share": (busy - window["busy"]) / CLOCK_TICKS / elapsed,
        "errors": errors,
        "dropped": dropped,
    }
    if named_pids:
        result["cpu_s"] = _named_seconds(window["named"], named)
    if updates is not None:
        done = updates.answered - window["updates"]
        result["updates"] = done
        result["updates_per_s"] = done / elapsed
        result["update_errors"] = updates.errors()
    result.update(_percentiles(lat))
    if late:
        lateness = _percentiles(late)
        result["late_p50_ms"] = lateness["p50_ms"]
        result["late_p99_ms"] = lateness["p99_ms"]
        result["late_p999_ms"] = lateness["p999_ms"]
    progress.show(now, "", force=True)
    for c in clients:
        c.sock.close()
    return result


def run_register(spec: Spec) -> Dict[str, Any]:
    """
    The C{register} mode: C{workers} workers of C{capacity} free slots each.
    """
    workers = int(spec["workers"])
    capacity = int(spec["capacity"])
    amp = spec["protocol"] == "amp"
    progress = Progress(spec.get("label", "register"), bool(spec.get("progress", True)))
    sock = _connect(spec["host"], spec["sched_port"] if amp else spec["port"])
    sock.setblocking(True)
    if not amp:
        script = wire.NEXT_WORKER_LUA.encode()
        sock.sendall(wire.resp_command(b"DEL", wire.REDIS_KEY))
        sock.sendall(wire.resp_command(b"SCRIPT", b"LOAD", script))
        answers = wire.RespAnswers()
        got = b""
        count = 0
        while count < 2:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            got += data
            count += answers.feed(data)
        if answers.error_count or wire.NEXT_WORKER_SHA.encode() not in got:
            raise RuntimeError(f"SCRIPT LOAD failed: {got!r}")
    sock.setblocking(False)
    batch = 1 if amp else 500
    window = 4096 if amp else 16
    commands = (workers + batch - 1) // batch
    server_pid = int(spec["server_pid"])
    named_pids: Dict[str, int] = spec.get("cpu_pids") or {}
    named0 = _named_ticks(named_pids)
    ticks0 = cpu_ticks(server_pid)
    t0 = perf_counter()
    sent = 0
    answered = 0
    amp_answers = wire.AmpAnswers()
    resp_answers = wire.RespAnswers()
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    wbuf = b""
    while answered < commands:
        if sent < commands and sent - answered < window:
            out = []
            while sent < commands and sent - answered < window:
                if amp:
                    out.append(wire.worker_update(wire.amp_tag(sent), sent, capacity))
                else:
                    first = sent * batch
                    out.append(wire.zadd_request(first, min(batch, workers - first), capacity))
                sent += 1
            wbuf += b"".join(out)
        if wbuf:
            with contextlib.suppress(BlockingIOError):
                wbuf = wbuf[sock.send(wbuf) :]
        if sel.select(0.05 if not wbuf else 0):
            data = _recv(sock)
            if not data:
                raise ConnectionError("the server closed the connection")
            if amp:
                answered += len(amp_answers.feed(data))
            else:
                answered += resp_answers.feed(data)
        done = min(answered * batch, workers)
        progress.show(perf_counter(), f"registering: {done:,}/{workers:,}")
    elapsed = perf_counter() - t0
    ticks = cpu_ticks(server_pid) - ticks0
    named = _named_ticks(named_pids)
    progress.show(0, "", force=True)
    errors = amp_answers.error_count + resp_answers.error_count
    if errors:
        codes = amp_answers.codes or {resp_answers.last_error: resp_answers.error_count}
        raise RuntimeError(f"{errors} registrations failed: {codes!r}")
    sock.close()
    result: Dict[str, Any] = {
        "workers": workers,
        "capacity": capacity,
        "seconds": elapsed,
        "updates_per_s": workers / elapsed,
        "server_cpu_s": ticks / CLOCK_TICKS,
        "server_cpu_us_per_update": ticks / CLOCK_TICKS / workers * 1e6,
        "batch": batch,
    }
    if named_pids:
        result["cpu_s"] = _named_seconds(named0, named)
    return result


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec: Spec = json.loads(args[0])
    result: Dict[str, Any]
    if spec["mode"] == "register":
        result = run_register(spec)
    elif spec["mode"] in ("closed", "open"):
        result = run_load(spec)
    else:
        raise SystemExit(f"unknown mode {spec['mode']!r}")
    result["loadgen_python"] = sys.version.split()[0] + (
        " PyPy" if sys.implementation.name == "pypy" else ""
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
