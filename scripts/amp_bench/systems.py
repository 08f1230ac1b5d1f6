"""
The systems under test, each started as a process of its own on free loopback
ports, pinned to the server core where C{taskset} exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence

SCRIPTS = Path(__file__).resolve().parent.parent
ROOT = SCRIPTS.parent


@dataclass(frozen=True)
class System:
    """
    What a row of the results measures: a server kind, driven by a client.
    C{driver} is C{"loadgen"} (the pre-encoded load generator) or
    C{"pyclient:<client>"} (a Python client library, see L{amp_bench.pyclient}).
    """

    name: str
    title: str
    server: str
    driver: str
    #: The server's work does not depend on how many workers are registered.
    size_free: bool = False
    #: Runs only when asked for (C{--systems all} or by name).
    optional: bool = False


SYSTEMS: Dict[str, System] = {
    s.name: s
    for s in [
        System("amp", "amp-dispatch (CPython)", "amp-cpython", "loadgen"),
        System("amp-pypy", "amp-dispatch (PyPy)", "amp-pypy", "loadgen"),
        System(
            "amp-client",
            "amp-dispatch (CPython) via FrontendClient",
            "amp-cpython",
            "pyclient:frontend",
        ),
        System("noop", "stock AMP no-op (CPython)", "noop-cpython", "loadgen", size_free=True),
        System(
            "noop-pypy",
            "stock AMP no-op (PyPy)",
            "noop-pypy",
            "loadgen",
            size_free=True,
            optional=True,
        ),
        System("heap", "stock AMP dict+heap (CPython)", "heap-cpython", "loadgen"),
        System("heap-pypy", "stock AMP dict+heap (PyPy)", "heap-pypy", "loadgen", optional=True),
        System("redis", "Redis + Lua (RESP)", "redis", "loadgen"),
        System("txredisapi", "Redis + Lua via txredisapi", "redis", "pyclient:txredisapi"),
        System(
            "amp-redis",
            "amp-dispatch (CPython), 1 replica on a Redis store",
            "amp-redis-1",
            "loadgen",
            optional=True,
        ),
        System(
            "amp-redis-2",
            "amp-dispatch (CPython), 2 replicas on a Redis store",
            "amp-redis-2",
            "loadgen",
            optional=True,
        ),
    ]
}

#: Server kinds in the order they run.
SERVER_ORDER = [
    "amp-cpython",
    "amp-pypy",
    "noop-cpython",
    "noop-pypy",
    "heap-cpython",
    "heap-pypy",
    "redis",
    "amp-redis-1",
    "amp-redis-2",
]

#: Server kinds of amp-dispatch replicas on a shared store: how many replicas.
STORE_REPLICAS = {"amp-redis-1": 1, "amp-redis-2": 2}


@dataclass
class Pinning:
    server: List[str] = field(default_factory=list)
    load: List[str] = field(default_factory=list)
    note: str = "not pinned"

    @classmethod
    def detect(cls) -> Pinning:
        taskset = shutil.which("taskset")
        cores = sorted(os.sched_getaffinity(0))
        if taskset is None:
            return cls(note="not pinned: taskset is missing (util-linux)")
        if len(cores) < 2:
            return cls(note=f"not pinned: only {len(cores)} core available")
        server, load = str(cores[0]), str(cores[1])
        return cls(
            server=[taskset, "-c", server],
            load=[taskset, "-c", load],
            note=f"server on core {server}, load generator on core {load} (taskset)",
        )


@dataclass
class Pythons:
    """
    The interpreters: C{cpython} runs CPython servers and Python clients,
    C{pypy} (a venv with amp-dispatch) PyPy servers, C{loadgen} the load
    generator (standard library only).
    """

    cpython: str
    pypy: Optional[str]
    loadgen: str
    redis: Optional[str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def serve_command(
    pinning: Pinning,
    python: str,
    frontend: int,
    scheduler: int,
    log_level: str,
    more: Sequence[str] = (),
) -> List[str]:
    """
    C{amp-dispatch serve} with C{python} on the server core, both listeners
    on loopback ports (0: any free one), JSON logs at C{log_level}, and
    C{more} options.
    """
    return [
        *pinning.server,
        python,
        "-m",
        "amp_dispatch",
        "serve",
        "--frontend",
        f"tcp:{frontend}:interface=127.0.0.1",
        "--scheduler",
        f"tcp:{scheduler}:interface=127.0.0.1",
        "--admin",
        "tcp:0:interface=127.0.0.1",
        "--log-format",
        "json",
        "--log-level",
        log_level,
        *more,
    ]


class ServerError(RuntimeError):
    pass


class Server:
    """
    A running server process: C{pid}, C{frontend} and C{scheduler} ports (the
    same for Redis).
    """

    def __init__(
        self,
        kind: str,
        pythons: Pythons,
        pinning: Pinning,
        log_dir: Path,
        more: Sequence[str] = (),
        name: str = "",
    ) -> None:
        self.kind = kind
        self.more = list(more)
        self.log_path = log_dir / f"{name or kind}-{time.strftime('%H%M%S')}.log"
        self.log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.frontend = 0
        self.scheduler = 0
        try:
            self._start(pythons, pinning)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _start(self, pythons: Pythons, pinning: Pinning) -> None:
        family, _, interpreter = self.kind.partition("-")
        python = pythons.pypy if interpreter == "pypy" else pythons.cpython
        env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
        if family == "amp":
            assert python is not None
            # Ports chosen here rather than tcp:0: at --log-level info (needed
            # for the "listening" lines) every registration is logged, which
            # would be measured too.
            for _ in range(5):
                self.frontend, self.scheduler = free_port(), free_port()
                command = serve_command(
                    pinning,
                    python,
                    self.frontend,
                    self.scheduler,
                    "warning",
                    # The registering connection closes; its workers stay.
                    ["--lease-grace", "86400", *self.more],
                )
                self.proc = subprocess.Popen(
                    command, stdout=self.log, stderr=self.log, cwd=ROOT, env=env
                )
                if self._wait_ports([self.frontend, self.scheduler]):
                    return
                self._terminate()
            raise ServerError(f"{self.kind} did not start; see {self.log_path}")
        if family in ("noop", "heap"):
            assert python is not None
            command = [*pinning.server, python, "-m", "amp_bench.stock_server", family]
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT, env=env
            )
            assert self.proc.stdout is not None
            ports: Dict[str, int] = {}
            while len(ports) < 2:
                line = self.proc.stdout.readline()
                if not line:
                    raise ServerError(f"{self.kind} did not start; see {self.log_path}")
                event = json.loads(line)
                if event.get("event") == "listening":
                    ports[event["role"]] = int(event["port"])
            self.frontend, self.scheduler = ports["frontend"], ports["scheduler"]
            return
        if family == "redis":
            assert pythons.redis is not None
            for _ in range(5):
                self.frontend = self.scheduler = free_port()
                command = [
                    *pinning.server,
                    pythons.redis,
                    "--port",
                    str(self.frontend),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ]
                self.proc = subprocess.Popen(
                    command, stdout=self.log, stderr=self.log, cwd=ROOT, env=env
                )
                if self._wait_ports([self.frontend]) and self._redis_ping():
                    return
                self._terminate()
            raise ServerError(f"redis-server did not start; see {self.log_path}")
        raise ServerError(f"unknown server kind {self.kind!r}")

    def _wait_ports(self, ports: List[int], timeout: float = 30.0) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if all(_accepts(p) for p in ports):
                return True
            time.sleep(0.05)
        return False

    def _redis_ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.frontend), timeout=5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")

    def stop(self) -> None:
        self._terminate()
        self.log.close()

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class StoreServers:
    """
    amp-dispatch on a shared store: one C{redis-server} (the store, started
    as the C{redis} system's server is) and C{replicas} C{amp-dispatch serve
    --store} processes over it, all on the server core.  C{frontends} and
    C{schedulers} are the replicas' ports; C{pids} names every process
    (C{store}, C{replica 1}, ...).
    """

    def __init__(self, replicas: int, pythons: Pythons, pinning: Pinning, log_dir: Path) -> None:
        self.store = Server("redis", pythons, pinning, log_dir, name="store")
        self.replicas: List[Server] = []
        try:
            url = f"redis://127.0.0.1:{self.store.frontend}/0"
            for n in range(1, replicas + 1):
                self.replicas.append(
                    Server(
                        "amp-cpython",
                        pythons,
                        pinning,
                        log_dir,
                        more=["--store", url],
                        name=f"replica-{n}",
                    )
                )
            self._wait_joined(replicas)
        except BaseException:
            self.stop()
            raise

    def _wait_joined(self, replicas: int, timeout: float = 30.0) -> None:
        from .store import StoreClient

        client = StoreClient(self.store.frontend)
        try:
            deadline = time.monotonic() + timeout
            while client.replicas() < replicas:
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the replicas did not join the store; see {self.replicas[0].log_path}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    @property
    def frontends(self) -> List[int]:
        return [r.frontend for r in self.replicas]

    @property
    def schedulers(self) -> List[int]:
        return [r.scheduler for r in self.replicas]

    @property
    def pids(self) -> Dict[str, int]:
        named = {"store": self.store.pid}
        for n, replica in enumerate(self.replicas, 1):
            named[f"replica {n}"] = replica.pid
        return named

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.store.stop()
