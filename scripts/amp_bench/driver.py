"""
The benchmark driver: starts each system, registers the workers, runs the load
generator against it, and writes the results (JSON, Markdown, PNG).

    python -m amp_bench [options]        (scripts/bench sets up and runs this)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import report
from .procstat import CLOCK_TICKS, busy_ticks, cpu_ticks, rss_bytes
from .store import StoreClient
from .systems import (
    ROOT,
    SCRIPTS,
    SERVER_ORDER,
    STORE_REPLICAS,
    SYSTEMS,
    Pinning,
    Pythons,
    Server,
    StoreServers,
    System,
)

DEFAULT_SYSTEMS = [name for name, s in SYSTEMS.items() if not s.optional]
QUICK_SYSTEMS = ["amp", "noop"]
#: Free slots in all, at least, so that no run empties the queue.
TOTAL_SLOTS = 200_000_000
#: The shared-store systems' over-dispatch count: workers of 1 to 8 slots in
#: a pool of their own, drained by twice their slots in calls.
DRAIN_POOL = "drain"
DRAIN_WORKERS = 1000
Result = Dict[str, Any]


def _sizes(text: str) -> List[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        scale = 1
        if part.endswith("k"):
            part, scale = part[:-1], 1000
        elif part.endswith("m"):
            part, scale = part[:-1], 1_000_000
        sizes.append(int(float(part) * scale))
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("worker counts are positive integers")
    return sizes


def _fractions(text: str) -> List[float]:
    values = [float(x) for x in text.split(",") if x.strip()]
    if any(not 0 < v < 1.5 for v in values):
        raise argparse.ArgumentTypeError("loads are fractions of the capacity, e.g. 0.5")
    return values


def _systems(text: str) -> List[str]:
    if text == "all":
        return list(SYSTEMS)
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}, all"
        )
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="amp-dispatch beside a stock AMP responder and Redis, in one run.",
    )
    parser.add_argument(
        "--workers",
        type=_sizes,
        default="10,100k",
        help="registered worker counts, e.g. 10,10k,100k,1m (default 10,100k)",
    )
    parser.add_argument(
        "--systems",
        type=_systems,
        default=None,
        help=f"comma-separated, or 'all'; default {','.join(DEFAULT_SYSTEMS)}",
    )
    parser.add_argument("--connections", type=int, default=32, help="closed loop: connections (32)")
    parser.add_argument(
        "--depth", type=int, default=16, help="closed loop: calls in flight per connection (16)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="closed loop warm-up, s (2)")
    parser.add_argument("--duration", type=float, default=10.0, help="closed loop measured, s (10)")
    parser.add_argument(
        "--open-loads",
        type=_fractions,
        default="0.25,0.5,0.75",
        help="open loop arrival rates, fractions of the closed-loop calls/s (0.25,0.5,0.75)",
    )
    parser.add_argument("--open-warmup", type=float, default=1.0, help="open loop warm-up, s (1)")
    parser.add_argument(
        "--open-duration", type=float, default=4.0, help="open loop measured, s (4)"
    )
    parser.add_argument(
        "--arrivals",
        choices=["poisson", "uniform"],
        default="poisson",
        help="open loop arrival process (poisson)",
    )
    parser.add_argument(
        "--updates-per-second",
        type=float,
        default=0.0,
        help="a WorkerUpdate (Redis: ZADD) stream alongside the load, per second (0)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 10 workers, 2 s runs, amp and noop only, no docs",
    )
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/benchmarks.md and docs/benchmarks-latency.png "
        "(default: yes, except with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench-results",
        help="directory of the JSON results and logs (bench-results)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: write the Markdown and plot of saved results (with --docs, the docs)",
    )
    parser.add_argument(
        "--pypy-python",
        default=None,
        help="python of a PyPy venv with amp-dispatch (default .venv-pypy)",
    )
    parser.add_argument(
        "--loadgen-python",
        default=None,
        help="interpreter of the load generator (default pypy3, else this one)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.workers = [10]
        args.warmup, args.duration = 0.5, 2.0
        args.open_loads = [0.5]
        args.open_warmup, args.open_duration = 0.5, 2.0
        if args.systems is None:
            args.systems = QUICK_SYSTEMS
    if args.systems is None:
        args.systems = DEFAULT_SYSTEMS
    if args.docs is None:
        args.docs = not args.quick and args.report is None
    return args


def find_pythons(args: argparse.Namespace) -> Pythons:
    pypy = args.pypy_python
    if pypy is None:
        candidate = ROOT / ".venv-pypy" / "bin" / "python"
        pypy = str(candidate) if candidate.exists() else None
    loadgen = args.loadgen_python or shutil.which("pypy3") or sys.executable
    return Pythons(
        cpython=sys.executable, pypy=pypy, loadgen=loadgen, redis=shutil.which("redis-server")
    )


def _version_of(python: str, module: str) -> str:
    code = (
        "import sys, importlib.metadata as m; v = sys.version.split()[0]; "
        "impl = 'PyPy ' + '.'.join(map(str, sys.pypy_version_info[:3])) + ' (Python ' + v + ')' "
        "if hasattr(sys, 'pypy_version_info') else 'CPython ' + v; "
        f"print(impl + (', {module.capitalize()} ' + m.version({module!r}) if {module!r} else ''))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or out.stderr.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError) as e:
        return f"unknown ({e})"


def background_load(seconds: float = 1.0) -> float:
    """
    Cores' worth of CPU used by processes (any) over C{seconds}, now.
    """
    before = busy_ticks()
    time.sleep(seconds)
    return (busy_ticks() - before) / CLOCK_TICKS / seconds


def machine_info(pythons: Pythons, pinning: Pinning) -> Dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "cpython": _version_of(pythons.cpython, "twisted"),
        "pinning": pinning.note,
    }
    info["pypy"] = _version_of(pythons.pypy, "twisted") if pythons.pypy else None
    info["loadgen"] = _version_of(pythons.loadgen, "")
    if pythons.redis:
        out = subprocess.run([pythons.redis, "--version"], capture_output=True, text=True)
        words = dict(w.split("=", 1) for w in out.stdout.split() if "=" in w)
        info["redis"] = f"Redis {words.get('v', out.stdout.strip())}"
    else:
        info["redis"] = None
    try:
        from importlib.metadata import version

        info["txredisapi"] = version("txredisapi")
    except Exception:
        info["txredisapi"] = None
    info["amp_dispatch"] = _git_describe()
    return info


def _git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "amp_dispatch",
                "commands",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "") if head else "unknown"
    except OSError:
        return "unknown"


class Progress:
    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def step(self, text: str) -> None:
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()

    def done(self, text: str) -> None:
        sys.stderr.write(f"\r\x1b[K{text}\n")
        sys.stderr.flush()


class Bench:
    def __init__(self, args: argparse.Namespace, pythons: Pythons, pinning: Pinning) -> None:
        self.args = args
        self.pythons = pythons
        self.pinning = pinning
        self.progress = Progress()
        self.runs: List[Result] = []
        self.registrations: List[Result] = []
        self.overdispatch: List[Result] = []
        self.skipped: List[Dict[str, str]] = []
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.stamp = stamp
        self.log_dir = args.output / "logs" / stamp
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ processes

    def _child(
        self,
        module: str,
        python: str,
        spec: Dict[str, Any],
        timeout: float,
        env_extra: Optional[Dict[str, str]] = None,
    ) -> Result:
        env = dict(os.environ, PYTHONPATH=str(SCRIPTS), **(env_extra or {}))
        command = [*self.pinning.load, python, "-m", module, json.dumps(spec)]
        done = subprocess.run(
            command, stdout=subprocess.PIPE, cwd=ROOT, env=env, timeout=timeout, check=False
        )
        lines = done.stdout.decode().strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"{module} failed (exit {done.returncode}): {spec['label']}")
        result: Result = json.loads(lines[-1])
        return result

    def loadgen(self, spec: Dict[str, Any]) -> Result:
        limit = spec.get("warmup", 0) + spec.get("duration", 0) + 120 + spec["workers"] / 5000
        # Under PyPy: no major collection before 1 GB (the generator makes
        # little garbage; a major collection would pause it for milliseconds).
        gc = {"PYPY_GC_MIN": os.environ.get("PYPY_GC_MIN", "1GB")}
        return self._child("amp_bench.loadgen", self.pythons.loadgen, spec, limit, gc)

    def pyclient(self, spec: Dict[str, Any]) -> Result:
        limit = spec["warmup"] + spec["duration"] + 120
        return self._child("amp_bench.pyclient", self.pythons.cpython, spec, limit)

    # ----------------------------------------------------------------- plan

    def missing(self, kind: str) -> Optional[str]:
        if kind.endswith("-pypy") and self.pythons.pypy is None:
            return (
                "no PyPy venv with amp-dispatch (.venv-pypy; "
                "Debian: apt-get install pypy3 pypy3-venv)"
            )
        if (kind == "redis" or kind in STORE_REPLICAS) and self.pythons.redis is None:
            return "redis-server is missing (Debian: apt-get install redis-server)"
        return None

    def sizes_for(self, system: System) -> List[int]:
        sizes: List[int] = self.args.workers
        if system.size_free:
            small = [n for n in sizes if n <= 100_000]
            return [max(small) if small else min(sizes)]
        return sizes

    def run(self) -> None:
        chosen = [SYSTEMS[name] for name in self.args.systems]
        for kind in SERVER_ORDER:
            systems = [s for s in chosen if s.server == kind]
            if not systems:
                continue
            why = self.missing(kind)
            if why is not None:
                for s in systems:
                    self.skipped.append({"system": s.name, "reason": why})
                self.progress.done(f"skipped {', '.join(s.name for s in systems)}: {why}")
                continue
            sizes = sorted({n for s in systems for n in self.sizes_for(s)})
            for size in sizes:
                here = [s for s in systems if size in self.sizes_for(s)]
                try:
                    self.run_server(kind, size, here)
                except Exception as e:
                    for s in here:
                        self.skipped.append({"system": s.name, "reason": f"{size}: {e}"})
                    self.progress.done(f"{kind} with {size:,} workers failed: {e}")

    def run_server(self, kind: str, size: int, systems: List[System]) -> None:
        if kind in STORE_REPLICAS:
            self.run_store_servers(kind, size, systems)
            return
        label = f"{kind} {size:,}"
        self.progress.step(f"[{label}] starting the server")
        server = Server(kind, self.pythons, self.pinning, self.log_dir)
        try:
            time.sleep(0.5)
            rss_empty = rss_bytes(server.pid)
            capacity = max(1_000_000, math.ceil(TOTAL_SLOTS / size))
            base = {
                "host": "127.0.0.1",
                "port": server.frontend,
                "sched_port": server.scheduler,
                "server_pid": server.pid,
                "protocol": "resp" if kind == "redis" else "amp",
                "workers": size,
                "capacity": capacity,
            }
            reg = self.loadgen({**base, "mode": "register", "label": label})
            time.sleep(0.3)
            rss_full = rss_bytes(server.pid)
            reg.update(
                server=kind,
                systems=[s.name for s in systems if s.driver == "loadgen"] or [systems[0].name],
                rss_empty=rss_empty,
                rss_full=rss_full,
                rss_per_worker=(rss_full - rss_empty) / size,
            )
            self.registrations.append(reg)
            each = (
                f"{reg['server_cpu_us_per_update']:.1f} us server CPU and "
                f"{reg['rss_per_worker']:.0f} bytes RSS each"
                if size >= 10_000
                else "too few to measure per worker"
            )
            self.progress.done(
                f"[{label}] registered {size:,} workers: {reg['updates_per_s']:,.0f}/s, {each}; "
                f"RSS {rss_empty / 2**20:.1f} -> {rss_full / 2**20:.1f} MiB"
            )
            for system in systems:
                if system.driver == "loadgen":
                    self.run_loadgen(system, size, base)
                else:
                    self.run_pyclient(system, size, base)
        finally:
            server.stop()

    def run_store_servers(self, kind: str, size: int, systems: List[System]) -> None:
        """
        The shared-store systems: a store and its replicas, all on the
        server core; the same phases as C{amp} (and one call in flight), the
        CPU of each process, the store's memory, and the over-dispatch
        checks.
        """
        label = f"{kind} {size:,}"
        self.progress.step(f"[{label}] starting the store and its replicas")
        servers = StoreServers(STORE_REPLICAS[kind], self.pythons, self.pinning, self.log_dir)
        store: Optional[StoreClient] = None
        try:
            store = StoreClient(servers.store.frontend)
            time.sleep(0.5)
            rss_empty = rss_bytes(servers.store.pid)
            used_empty = store.used_memory()
            replica_rss_empty = [rss_bytes(r.pid) for r in servers.replicas]
            capacity = max(1_000_000, math.ceil(TOTAL_SLOTS / size))
            base = {
                "host": "127.0.0.1",
                "port": servers.frontends[0],
                "ports": servers.frontends,
                "sched_port": servers.schedulers[0],
                "server_pid": servers.store.pid,
                "cpu_pids": servers.pids,
                "protocol": "amp",
                "workers": size,
                "capacity": capacity,
            }
            reg = self.loadgen({**base, "mode": "register", "label": label})
            time.sleep(0.3)
            rss_full = rss_bytes(servers.store.pid)
            used_full = store.used_memory()
            store_s, replica_s = _split_cpu(reg["cpu_s"])
            reg.update(
                server=kind,
                systems=[s.name for s in systems],
                replicas=len(servers.replicas),
                # The server core's CPU: the store and the replicas.
                server_cpu_s=store_s + replica_s,
                server_cpu_us_per_update=(store_s + replica_s) / size * 1e6,
                store_cpu_us_per_update=store_s / size * 1e6,
                replica_cpu_us_per_update=replica_s / size * 1e6,
                rss_empty=rss_empty,
                rss_full=rss_full,
                rss_per_worker=(rss_full - rss_empty) / size,
                used_memory_empty=used_empty,
                used_memory_full=used_full,
                used_memory_per_worker=(used_full - used_empty) / size,
                replica_rss_empty=replica_rss_empty,
                replica_rss_full=[rss_bytes(r.pid) for r in servers.replicas],
                check=store.check().as_dict(),
            )
            self.registrations.append(reg)
            self.progress.done(
                f"[{label}] registered {size:,} workers: {reg['updates_per_s']:,.0f}/s, "
                f"store {reg['store_cpu_us_per_update']:.1f} + replica "
                f"{reg['replica_cpu_us_per_update']:.1f} us CPU each; store RSS "
                f"{rss_empty / 2**20:.1f} -> {rss_full / 2**20:.1f} MiB, used_memory "
                f"{reg['used_memory_per_worker']:.0f} bytes/worker"
            )
            client = store
            before = [reg["check"]]

            def after(result: Result) -> None:
                # Calls still queued when the load generator left (in the
                # replicas or the store, past saturation) would be measured
                # by the next run: wait, bounded, until the server core is idle.
                result["settle_s"] = _settle(servers.pids)
                check = client.check().as_dict()
                _store_figures(result, check, before[0])
                before[0] = check

            for system in systems:
                self.run_loadgen(system, size, base, after=after, one_in_flight=True)
            self.progress.step(f"[{label}] over-dispatch count")
            drain = self._child(
                "amp_bench.overdispatch",
                self.pythons.loadgen,
                {
                    "label": f"{label} drain",
                    "host": "127.0.0.1",
                    "ports": servers.frontends,
                    "sched_port": servers.schedulers[0],
                    "pool": DRAIN_POOL,
                    "workers": DRAIN_WORKERS,
                    "conns": 8 * len(servers.replicas),
                    "timeout": 60,
                },
                120,
            )
            drain.update(
                system=systems[0].name,
                server=kind,
                size=size,
                check=store.check(DRAIN_POOL).as_dict(),
            )
            self.overdispatch.append(drain)
            self.progress.done(f"[{label}] {report.drain_summary(drain)}")
        finally:
            if store is not None:
                store.close()
            servers.stop()

    def _record(self, system: System, size: int, result: Result, label: str) -> None:
        result.update(system=system.name, title=system.title, workers=size, label=label)
        self.runs.append(result)
        self.progress.done(f"[{system.name} {size:,}] {report.summary(result)}")

    def run_loadgen(
        self,
        system: System,
        size: int,
        base: Dict[str, Any],
        after: Optional[Callable[[Result], None]] = None,
        one_in_flight: bool = False,
    ) -> None:
        """
        The closed loop, then the open loops at its fractions; with
        C{one_in_flight}, then one connection with one call in flight.
        C{after} adds to each result before it is recorded.
        """
        a = self.args
        common = {
            **base,
            "conns": a.connections,
            "updates_per_second": a.updates_per_second,
            "arrivals": a.arrivals,
        }
        label = f"{system.name} {size:,}"
        closed = self.loadgen(
            {
                **common,
                "mode": "closed",
                "depth": a.depth,
                "warmup": a.warmup,
                "duration": a.duration,
                "label": label,
            }
        )
        if after is not None:
            after(closed)
        self._record(system, size, closed, f"closed {a.connections}x{a.depth}")
        capacity = closed["calls_per_s"]
        for fraction in a.open_loads:
            rate = capacity * fraction
            result = self.loadgen(
                {
                    **common,
                    "mode": "open",
                    "rate": rate,
                    "warmup": a.open_warmup,
                    "duration": a.open_duration,
                    "label": f"{label} open {fraction:.0%}",
                }
            )
            result["load_fraction"] = fraction
            if after is not None:
                after(result)
            self._record(system, size, result, f"open {fraction:.0%}")
        if one_in_flight:
            single = self.loadgen(
                {
                    **common,
                    "mode": "closed",
                    "conns": 1,
                    "depth": 1,
                    "warmup": a.open_warmup,
                    "duration": a.open_duration,
                    "label": f"{label} 1x1",
                }
            )
            if after is not None:
                after(single)
            self._record(system, size, single, "closed 1x1")

    def run_pyclient(self, system: System, size: int, base: Dict[str, Any]) -> None:
        a = self.args
        client = system.driver.split(":", 1)[1]
        label = f"{system.name} {size:,}"
        for conns, depth, warmup, duration in [
            (a.connections, a.depth, a.warmup, a.duration),
            (1, 1, a.open_warmup, a.open_duration),
        ]:
            result = self.pyclient(
                {
                    **base,
                    "client": client,
                    "conns": conns,
                    "depth": depth,
                    "warmup": warmup,
                    "duration": duration,
                    "label": f"{label} {conns}x{depth}",
                }
            )
            self._record(system, size, result, f"closed {conns}x{depth}")

    # -------------------------------------------------------------- results

    def results(self, command: str, machine: Dict[str, Any], seconds: float) -> Result:
        a = self.args
        return {
            "started": self.stamp,
            "command": command,
            "seconds": seconds,
            "machine": machine,
            "config": {
                "workers": a.workers,
                "systems": a.systems,
                "connections": a.connections,
                "depth": a.depth,
                "warmup": a.warmup,
                "duration": a.duration,
                "open_loads": a.open_loads,
                "open_warmup": a.open_warmup,
                "open_duration": a.open_duration,
                "arrivals": a.arrivals,
                "updates_per_second": a.updates_per_second,
                "quick": a.quick,
            },
            "titles": {name: s.title for name, s in SYSTEMS.items()},
            "registrations": self.registrations,
            "runs": self.runs,
            "overdispatch": self.overdispatch,
            "skipped": self.skipped,
        }


def _settle(pids: Dict[str, int], limit: float = 60.0) -> float:
    """
    Seconds until the processes C{pids} together use under 5 % of a core
    over 0.2 s, at most C{limit}.
    """
    start = time.monotonic()
    while time.monotonic() - start < limit:
        before = sum(cpu_ticks(pid) for pid in pids.values())
        time.sleep(0.2)
        if (sum(cpu_ticks(pid) for pid in pids.values()) - before) / CLOCK_TICKS < 0.01:
            break
    return time.monotonic() - start


def _split_cpu(cpu_s: Dict[str, float]) -> Tuple[float, float]:
    """
    The store's CPU seconds and the replicas' (summed) of a C{cpu_s}.
    """
    store = cpu_s["store"]
    return store, sum(v for k, v in cpu_s.items() if k != "store")


def _store_figures(result: Result, check: Dict[str, int], before: Dict[str, int]) -> None:
    """
    A shared-store run's figures: the server core's CPU is the store's and
    the replicas', each also per call; C{check} is the store's count of the
    pool after the run (see L{StoreClient.check}), C{before} the same before
    the run.
    """
    calls = max(result["calls"], 1)
    store_s, replica_s = _split_cpu(result["cpu_s"])
    result["server_cpu_s"] = store_s + replica_s
    result["server_cpu_us_per_call"] = (store_s + replica_s) / calls * 1e6
    result["server_cpu_share"] = (store_s + replica_s) / result["seconds"]
    result["store_cpu_us_per_call"] = store_s / calls * 1e6
    result["replica_cpu_us_per_call"] = replica_s / calls * 1e6
    result["store_cpu_share"] = store_s / result["seconds"]
    result["replica_cpu_share"] = replica_s / result["seconds"]
    # Every worker's answers since its update within its capacity (no free
    # slots below 0 or above the capacity), the run's answers as many as the
    # store's own count of answers grew by (only this pool is asked during
    # the run), and at least the successful answers the load generator
    # counted in its window.
    counted = result["calls"] - sum(result.get("errors", {}).values())
    phase = check["answered"] - before["answered"]
    counter = check["answers_counter"] - before["answers_counter"]
    result["check"] = dict(check, counted=counted, phase_answers=phase)
    # (A WorkerUpdate stream refills workers: answers before a worker's
    # update no longer count against it, only the bounds are checked.)
    refilled = "updates" in result
    result["check_ok"] = (
        check["negative"] == 0
        and check["above"] == 0
        and check["answered"] <= check["capacity"]
        and (refilled or (phase == counter and phase >= counted))
    )


def estimate_seconds(args: argparse.Namespace) -> float:
    total = 0.0
    for name in args.systems:
        s = SYSTEMS[name]
        sizes = args.workers if not s.size_free else [min(args.workers)]
        for size in sizes:
            total += 3 + size / 30_000  # start and register
            if s.driver == "loadgen":
                total += args.warmup + args.duration + 1
                total += len(args.open_loads) * (args.open_warmup + args.open_duration + 1)
                if s.server in STORE_REPLICAS:
                    # One call in flight, the over-dispatch count.
                    total += args.open_warmup + args.open_duration + 1 + 5
            else:
                total += args.warmup + args.duration + args.open_warmup + args.open_duration + 4
    return total


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = shlex.join(["scripts/bench", *argv])
    if args.report is not None:
        results = json.loads(args.report.read_text())
        write_results(args, results, args.report.with_suffix(""), [])
        return
    pinning = Pinning.detect()
    if pinning.load:
        # This process waits on the load generator's core, off the server's.
        os.sched_setaffinity(0, {int(pinning.load[-1])})
    pythons = find_pythons(args)
    bench = Bench(args, pythons, pinning)
    machine = machine_info(pythons, pinning)
    machine["background_load"] = background_load()
    if machine["background_load"] > 0.2:
        print(
            f"scripts/bench: other processes use {machine['background_load']:.1f} cores "
            "right now: the figures will be noisy (see the notes column)",
            file=sys.stderr,
        )
    print(
        f"amp-dispatch bench: {', '.join(args.systems)}; workers "
        f"{', '.join(f'{n:,}' for n in args.workers)}; about "
        f"{estimate_seconds(args) / 60:.1f} min; {pinning.note}; load generator: "
        f"{machine['loadgen']}",
        file=sys.stderr,
    )
    t0 = time.monotonic()
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.progress.done("interrupted: writing what was measured")
    seconds = time.monotonic() - t0
    results = bench.results(command, machine, seconds)
    args.output.mkdir(parents=True, exist_ok=True)
    json_path = args.output / f"{bench.stamp}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    write_results(args, results, args.output / bench.stamp, [json_path])
    if bench.skipped:
        for s in bench.skipped:
            print(f"skipped {s['system']}: {s['reason']}", file=sys.stderr)


def write_results(
    args: argparse.Namespace, results: Result, stem: Path, written: List[Path]
) -> None:
    """
    The Markdown and the plot beside the JSON (C{stem}.md, C{stem}.png),
    and with C{--docs} the docs; prints the table.
    """
    md_path = stem.with_suffix(".md")
    png_path = stem.with_suffix(".png")
    plotted = report.plot(results, png_path)
    md_path.write_text(report.markdown(results, plot_name=None))
    written = [*written, md_path] + ([png_path] if plotted else [])
    if args.docs:
        doc_png = ROOT / "docs" / "benchmarks-latency.png"
        if plotted:
            shutil.copyfile(png_path, doc_png)
            written.append(doc_png)
        doc = ROOT / "docs" / "benchmarks.md"
        generated = report.markdown(results, plot_name=doc_png.name if plotted else None)
        report.update_doc(doc, generated)
        written.append(doc)
    print(report.text_table(results))
    shown = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written]
    print(f"took {results['seconds'] / 60:.1f} min; wrote {', '.join(shown)}")
