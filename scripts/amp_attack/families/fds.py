"""
C{fds}: the server runs with 1,024 file descriptors; 1,500 idle front-end
connections are opened against it.  Meanwhile the scheduler listener must
still accept a connection and answer a C{WorkerUpdate} and a C{Stats}
within 100 ms each, and a front-end connection opened before the attack must
still be answered.  How many of the 1,500 the server kept (accepted: its
open descriptors), left waiting unaccepted, closed (Twisted keeps a spare
descriptor: at EMFILE it accepts a connection and closes it at once) or
refused is recorded;
so are its CPU and log while it holds them (a server that spins on
C{accept} failing with EMFILE burns a core and floods its log).
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from typing import Any, Dict, List, Optional, Tuple

from ..harness import MB, Context, Family, Outcome
from ..wire import LOOPBACK, Caller, CallFailed

LATENCY_TARGET = 0.100
#: Server CPU share while it holds the idle connections, above which it spins.
SPIN_TARGET = 0.5


def open_many(
    ctx: Context, count: int, batch: int = 40, seconds: float = 20.0
) -> Tuple[List[socket.socket], Dict[str, int]]:
    """
    Open C{count} connections to the front end in batches of C{batch}
    (the accept queue holds 50), each batch once the server accepted the
    previous one or stopped accepting; the sockets and how many connected,
    failed or are still pending.
    """
    server = ctx.server
    socks: List[socket.socket] = []
    counts = {"connected": 0, "refused": 0, "pending": 0, "local_errors": 0}
    deadline = time.monotonic() + seconds
    taking = True
    while len(socks) < count and time.monotonic() < deadline:
        fds = server.fds()
        new, batch_counts = _connect_batch(server.frontend, min(batch, count - len(socks)), 2.0)
        socks += new
        for key, value in batch_counts.items():
            counts[key] += value
        if taking:
            # Until the server has taken them, or takes no more.
            settle = time.monotonic() + 0.5
            while time.monotonic() < settle and server.fds() < fds + len(new):
                time.sleep(0.02)
            taking = server.fds() > fds
        ctx.progress(f"{len(socks):,} connections open, server holds {server.fds()} fds")
    return socks, counts


def _connect_batch(
    port: int, count: int, seconds: float
) -> Tuple[List[socket.socket], Dict[str, int]]:
    socks: List[socket.socket] = []
    sel = selectors.DefaultSelector()
    counts = {"connected": 0, "refused": 0, "pending": 0, "local_errors": 0}
    for _ in range(count):
        try:
            s = socket.socket()
        except OSError:
            counts["local_errors"] += 1
            continue
        s.setblocking(False)
        code = s.connect_ex((LOOPBACK, port))
        if code not in (0, errno.EINPROGRESS):
            counts["refused"] += 1
            s.close()
            continue
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + seconds
    waiting = len(socks)
    while waiting and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            sel.unregister(sock)
            waiting -= 1
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                counts["refused"] += 1
            else:
                counts["connected"] += 1
    counts["pending"] = waiting
    sel.close()
    return socks, counts


def closed_by_server(socks: List[socket.socket]) -> int:
    """
    How many of C{socks} the server closed (EOF or reset).
    """
    closed = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def timed_scheduler_calls(port: int) -> Dict[str, Any]:
    """
    Connect to the scheduler and call C{WorkerUpdate} then C{Stats}; the
    seconds each took (connecting counted with the update), C{None} when
    it got no answer within 2 s (C{error} says why).
    """
    times: Dict[str, Any] = {"update": None, "stats": None, "error": None}
    t0 = time.perf_counter()
    try:
        with Caller(port, 2.0) as caller:
            box = caller.call(
                "WorkerUpdate", 2.0, worker_id="fds-w", host="127.0.0.1", port=9, capacity=0
            )
            if box.get(b"accepted") == b"True":
                times["update"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            caller.stats(2.0)
            times["stats"] = time.perf_counter() - t1
    except (OSError, CallFailed) as e:
        times["error"] = str(e)
    return times


class Fds(Family):
    """
    More idle front-end connections than the server has descriptors.
    """

    name = "fds"
    method = "server limited to 1,024 fds; 1,500 idle front-end connections opened and held"
    target = (
        "scheduler accepts and answers WorkerUpdate and Stats within 100 ms each; a "
        "front-end connection opened before still answered"
    )

    def attack(self, ctx: Context) -> Outcome:
        count = ctx.scale(1500, 1500)
        server = ctx.server
        before_caller = Caller(server.frontend)
        before_caller.stats()  # now the server has accepted it
        fds0 = server.fds()
        log0 = server.log_size()
        socks: List[socket.socket] = []
        defects: List[str] = []
        details: Dict[str, Any] = {"fds_before": fds0}
        try:
            ctx.progress(f"opening {count:,} connections")
            socks, counts = open_many(ctx, count)
            time.sleep(0.5)
            fds_held = server.fds()
            cpu0, t0 = server.cpu_seconds(), time.monotonic()
            log1 = server.log_size()
            time.sleep(2.0)
            spin = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            log_rate = (server.log_size() - log1) / (time.monotonic() - t0)
            ctx.progress("calling the scheduler listener")
            times = timed_scheduler_calls(server.scheduler)
            old_stats: Optional[float] = None
            t = time.perf_counter()
            try:
                before_caller.stats(2.0)
                old_stats = time.perf_counter() - t
            except CallFailed as e:
                details["old_connection_error"] = str(e)
            closed = closed_by_server(socks)
            accepted = fds_held - fds0
            details.update(
                counts,
                fds_held=fds_held,
                accepted=accepted,
                closed_by_server=closed,
                not_accepted=max(0, counts["connected"] - accepted - closed),
                scheduler_update_s=times["update"],
                scheduler_stats_s=times["stats"],
                scheduler_error=times["error"],
                old_frontend_stats_s=old_stats,
                server_cpu_share_holding=round(spin, 3),
                log_bytes_per_s_holding=round(log_rate),
                log_bytes_opening=log1 - log0,
            )
        finally:
            for s in socks:
                s.close()
            before_caller.close()
        for what, value in (("WorkerUpdate", times["update"]), ("Stats", times["stats"])):
            if value is None:
                defects.append(
                    f"scheduler {what} not answered with fds exhausted ({times['error']})"
                )
            elif value > LATENCY_TARGET:
                defects.append(f"scheduler {what} took {value * 1e3:.0f} ms (target 100 ms)")
        if old_stats is None:
            defects.append("the front-end connection opened before got no answer")
        if spin > SPIN_TARGET:
            defects.append(f"server spins while holding them: {spin:.0%} of a core")
        details["fds_after"] = fds_after = server.fds_settled(fds0 - 1, 5.0)
        if fds_after is not None and fds_after > fds0 - 1:
            defects.append(f"fd leak: {fds_after - fds0 + 1} more open fds than before, 5 s after")

        def ms(v: Optional[float]) -> str:
            if v is not None:
                return f"{v * 1e3:.1f} ms"
            return "reset" if "reset" in str(times["error"]) else "no answer"

        return Outcome(
            volume=f"{count:,} connections",
            measured=(
                f"kept {accepted:,}, unaccepted {details['not_accepted']:,}, closed {closed:,}, "
                f"refused {counts['refused'] + counts['pending']:,}; scheduler update "
                f"{ms(times['update'])}, Stats {ms(times['stats'])}; old front end "
                f"{ms(old_stats)}; CPU {spin:.0%}, log {log_rate / MB * 1024:.0f} KB/s"
            ),
            defects=defects,
            details=details,
        )
