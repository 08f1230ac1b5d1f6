"""
What every family shares: the L{Family} interface, the L{Context} a family
runs in, and L{run_family}, which starts a fresh server, sets it up, runs the
attack with the clean client measuring, and then looks for defects the same
way for every family (server died, tracebacks in its log, a listener that no
longer answers C{Stats}, a clean C{NextWorker} that is not answered).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from amp_bench.systems import Pinning

from .clean import CLEAN_CAPACITY, CLEAN_POOL, CLEAN_WORKER, CleanClient, CleanSpec
from .server import Server, ServerError
from .wire import Caller, CallFailed, call_box, error_code

MB = 1 << 20
#: Seconds a check call may take.
CHECK_TIMEOUT = 5.0


@dataclass
class Outcome:
    """
    What a family measured: its C{volume} (what it sent), the figure that
    its target is about (C{measured}), its C{defects} (empty: it held), and
    free-form C{details} for the JSON.  C{clean_p99_ms} is a target for the
    clean client's p99 during the attack, checked by L{run_family}.
    C{verify}, if given, runs once the clean client has stopped (nothing
    moves then), with the clean client's result, and returns more defects.
    """

    volume: str
    measured: str
    defects: List[str] = field(default_factory=list)
    details: Dict[str, Any] = field(default_factory=dict)
    clean_p99_ms: Optional[float] = None
    verify: Optional[Callable[[Dict[str, Any]], List[str]]] = None


class Family:
    """
    One family of attacks.  C{name} is its name on the command line,
    C{method} and C{target} one line each for the docs; C{setup} runs before
    the clean client starts, C{attack} while it measures.
    """

    name: str
    method: str
    target: str

    def server_args(self, options: Sequence[str]) -> List[str]:
        """
        Server options beside the listeners and logging, for a build that
        has C{options}.
        """
        return ["--lease-grace", "3600"]

    def setup(self, ctx: Context) -> None:
        """
        Prepare the server (register workers...); not measured.
        """

    def attack(self, ctx: Context) -> Outcome:
        raise NotImplementedError


@dataclass
class Context:
    """
    What a family works with: the C{server}, its C{control} connection to
    the scheduler listener (which registered the clean client's worker and
    stays open), whether this is a C{quick} run, the server's option
    C{defaults} (from its C{--help}, else the expected ones; C{options}:
    the options it has).
    """

    server: Server
    control: Caller
    quick: bool
    defaults: Dict[str, Any]
    progress_prefix: str = ""

    def progress(self, text: str) -> None:
        """
        A transient progress line on stderr.
        """
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\x1b[K{self.progress_prefix}{text}")
            sys.stderr.flush()

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def seconds(self, full: float, quick: float) -> float:
        return quick if self.quick else full


def health(server: Server) -> List[str]:
    """
    The defects a look at the server finds now: dead, a listener that does
    not answer C{Stats} on a fresh connection, a clean C{NextWorker} not
    answered with the clean worker.
    """
    if not server.alive():
        return [f"server died (exit status {server.proc.returncode})"]
    checks = [
        ("Stats on the front-end listener", server.frontend, call_box("Stats", b"h")),
        ("Stats on the scheduler listener", server.scheduler, call_box("Stats", b"h")),
        ("a clean NextWorker", server.frontend, call_box("NextWorker", b"h", pool=CLEAN_POOL)),
    ]
    # All three at once, so that a stuck server costs one timeout, not three.
    callers: List[Optional[Caller]] = []
    defects: List[str] = []
    for label, port, box in checks:
        opened: Optional[Caller] = None
        try:
            opened = Caller(port, CHECK_TIMEOUT)
            opened.send(box)
        except (OSError, CallFailed) as e:
            if opened is not None:
                opened.close()
                opened = None
            defects.append(f"{label} failed afterwards: {e}")
        callers.append(opened)
    deadline = time.monotonic() + CHECK_TIMEOUT
    for (label, _, _), caller in zip(checks, callers):
        if caller is None:
            continue
        try:
            answer = caller.answer(b"h", max(0.0, deadline - time.monotonic()))
            if b"_error" in answer:
                code = (error_code(answer) or b"?").decode("ascii", "replace")
                defects.append(f"{label} got {code} afterwards")
            elif label.endswith("NextWorker") and answer.get(b"worker_id") != CLEAN_WORKER.encode():
                defects.append(f"{label} got {answer!r} afterwards")
        except CallFailed as e:
            why = f"no answer within {CHECK_TIMEOUT:g} s" if "no answer" in str(e) else str(e)
            defects.append(f"{label} failed afterwards: {why}")
        finally:
            caller.close()
    return defects


def register_clean_worker(control: Caller) -> None:
    box = control.call(
        "WorkerUpdate",
        CHECK_TIMEOUT,
        worker_id=CLEAN_WORKER,
        host="127.0.0.1",
        port=9,
        capacity=CLEAN_CAPACITY,
        pool=CLEAN_POOL,
    )
    if box.get(b"accepted") != b"True":
        raise RuntimeError(f"the clean client's worker was not registered: {box!r}")


def probe(port: int, call: bytes, tag: bytes, ping: bytes, seconds: float = 3.0) -> Dict[str, Any]:
    """
    Make one call (encoded, tagged C{tag}) on a fresh connection: its error
    code (or C{answered}) within C{seconds}; then whether the C{ping} call
    (tagged C{ping}) on the same connection is answered at all.
    """
    result: Dict[str, Any] = {"answer": None, "connection_kept": False}
    with Caller(port) as caller:
        try:
            box = caller.call_raw(call, tag, seconds)
            result["answer"] = (error_code(box) or b"answered").decode("ascii", "replace")
        except CallFailed as e:
            result["error"] = str(e)
        try:
            caller.call_raw(ping, b"ping", CHECK_TIMEOUT)
            result["connection_kept"] = True
        except CallFailed as e:
            result["ping_error"] = str(e)
    return result


def assigned(caller: Caller, worker_id: str) -> int:
    """
    The slots of a worker taken since its last update (C{capacity - free}).
    """
    for row in caller.list_all():
        if row[b"worker_id"] == worker_id.encode():
            return int(row[b"capacity"]) - int(row[b"free"])
    raise RuntimeError(f"worker {worker_id} is not registered")


def run_family(
    family: Family,
    python: str,
    pinning: Pinning,
    log_dir: Path,
    quick: bool,
    defaults: Dict[str, Any],
) -> Dict[str, Any]:
    """
    Run one family on a fresh server; its result as a JSON-ready dict.
    """
    log_path = log_dir / f"{family.name}.log"
    result: Dict[str, Any] = {"family": family.name, "target": family.target}
    defects: List[str] = []
    try:
        server = Server(python, log_path, pinning, family.server_args(defaults["options"]))
    except ServerError as e:
        result.update(volume="-", measured="-", defects=[str(e)], held=False, log=str(log_path))
        return result
    try:
        control = Caller(server.scheduler, CHECK_TIMEOUT)
        register_clean_worker(control)
        ctx = Context(server, control, quick, defaults, f"[{family.name}] ")
        family.setup(ctx)
        rss_before = server.rss()
        log_before = server.log_size()
        cpu_before = server.cpu_seconds()
        clean = CleanClient(CleanSpec(port=server.frontend))
        clean.start()
        clean.go()
        t0 = time.monotonic()
        try:
            outcome = family.attack(ctx)
        finally:
            duration = time.monotonic() - t0
            clean_result = clean.stop()
        alive = server.alive()
        rss_after = server.rss() if alive else None
        cpu_after = server.cpu_seconds() if alive else None
        log_after = server.log_size()
        defects += outcome.defects
        if outcome.verify is not None and alive:
            defects += outcome.verify(clean_result)
        if not clean_result.get("calls"):
            defects.append("harness: the clean client made no call during the attack")
        if outcome.clean_p99_ms is not None:
            p99 = clean_result.get("p99_ms")
            if p99 is None or p99 >= outcome.clean_p99_ms:
                defects.append(
                    f"clean client p99 {_fmt_ms(p99)} ms, target under {outcome.clean_p99_ms:g} ms"
                )
        defects += health(server)
        control.close()
        scan = server.scan_log()
        if scan.traceback_lines:
            defects.append(f"{scan.traceback_lines:,} traceback lines in the server log")
        result.update(
            volume=outcome.volume,
            measured=outcome.measured,
            duration_s=round(duration, 2),
            rss_before=rss_before,
            rss_after=rss_after,
            server_cpu_s=None if cpu_after is None else round(cpu_after - cpu_before, 3),
            log_bytes=log_after - log_before,
            log_bytes_total=log_after,
            traceback_lines=scan.traceback_lines,
            traceback_samples=scan.samples,
            clean=clean_result,
            details=outcome.details,
        )
    except Exception as e:  # the harness failed: say so, as a defect of the run
        if not server.alive():
            defects.append(f"server died (exit status {server.proc.returncode})")
        defects.append(f"harness error: {type(e).__name__}: {e}")
        result.setdefault("volume", "-")
        result.setdefault("measured", "-")
    finally:
        status = server.stop()
        result["exit_status"] = status
    if status not in (0, None):
        defects.append(f"the server did not stop cleanly on SIGTERM (exit status {status})")
    result["defects"] = defects
    result["held"] = not defects
    result["log"] = keep_log(log_path, result["held"])
    return result


#: The most of a server log kept (its beginning) for a family with defects.
LOG_KEPT = 16 * MB


def keep_log(path: Path, held: bool) -> Optional[str]:
    """
    Delete the log of a family that held; cut that of one with defects to
    its first L{LOG_KEPT} bytes (log floods write hundreds of MB).
    """
    if held:
        path.unlink(missing_ok=True)
        return None
    if path.stat().st_size > LOG_KEPT:
        os.truncate(path, LOG_KEPT)
    return str(path)


def _fmt_ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"
