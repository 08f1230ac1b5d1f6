"""
The server under attack: a real C{amp-dispatch serve} on free loopback ports
(C{tcp:0}), with a file-descriptor limit of 1024 (soft and hard), pinned to
the server core with C{taskset} where it can be, its stdout and stderr in a
log file.  Its CPU time, RSS and open file descriptors are read from C{/proc}
(L{amp_bench.procstat}), its log scanned for tracebacks.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, List, Optional

from amp_bench.procstat import CLOCK_TICKS, cpu_ticks, rss_bytes
from amp_bench.systems import ROOT, Pinning, serve_command

#: The server's limit of open files, soft and hard.
FD_LIMIT = 1024
#: Defaults of the hardened server's options, for builds that cannot tell.
EXPECTED_DEFAULTS = {"max-box-bytes": 16_384, "max-waiting-per-connection": 1_000}


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


class ServerError(RuntimeError):
    """
    The server did not start.
    """


@dataclass
class LogScan:
    """
    What a read of the server's log found: lines that show a traceback
    (C{Traceback}, C{Unhandled Error}, or a JSON event carrying C{exc_info}
    or C{exception}), and the first few of them.
    """

    lines: int = 0
    traceback_lines: int = 0
    samples: List[str] = field(default_factory=list)


def _is_traceback(line: bytes) -> bool:
    if b"Traceback" in line or b"Unhandled Error" in line:
        return True
    if b'"exc_info"' in line or b'"exception"' in line:
        try:
            event = json.loads(line)
        except ValueError:
            return True
        return isinstance(event, dict) and ("exc_info" in event or "exception" in event)
    return False


def server_options(python: str) -> Dict[str, Optional[str]]:
    """
    The options C{amp-dispatch serve} takes and their defaults, from its
    C{--help} (a build may lack the hardening options).
    """
    out = subprocess.run(
        [python, "-m", "amp_dispatch", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    ).stdout
    options: Dict[str, Optional[str]] = {}
    # Options, then their help text with "[default: X]" (wrapped) up to the next option.
    for match in re.finditer(r"--([a-z-]+)=?\s+(.*?)(?=\n\s+--|\n\n|\Z)", out, re.S):
        default = re.search(r"\[default:\s*([^\]]+)\]", match.group(2))
        options[match.group(1)] = default.group(1).strip() if default else None
    return options


class Server:
    """
    One running C{amp-dispatch serve}: C{pid}, C{frontend} and C{scheduler}
    ports, C{log_path}.
    """

    def __init__(
        self,
        python: str,
        log_path: Path,
        pinning: Pinning,
        extra: Optional[List[str]] = None,
    ) -> None:
        self.log_path = log_path
        self.frontend = 0
        self.scheduler = 0
        self.returncode: Optional[int] = None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        command = serve_command(pinning, python, 0, 0, "info", extra or [])
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=_limit_files,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        ports: Dict[str, int] = {}
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                for line in f:
                    if b'"listening"' in line:
                        event = json.loads(line)
                        ports[event["role"]] = int(event["port"])
            if {"frontend", "scheduler"} <= ports.keys():
                self.frontend, self.scheduler = ports["frontend"], ports["scheduler"]
                self._check_identity()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise ServerError(f"the server did not start; see {self.log_path}")

    def _check_identity(self) -> None:
        """
        Make sure C{pid} is the dispatcher itself (C{taskset} execs it), so
        that what C{/proc} says is the server's CPU and memory.
        """
        with open(f"/proc/{self.pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
        if b"amp_dispatch" not in cmdline:
            raise ServerError(f"process {self.pid} is not the dispatcher: {cmdline!r}")
        if cpu_ticks(self.pid) <= 0:
            raise ServerError("the server's CPU time reads as 0 after start-up")

    # ----------------------------------------------------------- measures

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """
        User plus system CPU time of the server so far, in seconds.
        """
        return cpu_ticks(self.pid) / CLOCK_TICKS

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def fds(self) -> int:
        """
        The server's open file descriptors, now.
        """
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fds_settled(self, at_most: int, seconds: float) -> Optional[int]:
        """
        The open descriptors once at most C{at_most}, or after C{seconds}
        (connections being closed take a moment); C{None} if it died.
        """
        deadline = time.monotonic() + seconds
        while self.alive():
            fds = self.fds()
            if fds <= at_most or time.monotonic() > deadline:
                return fds
            time.sleep(0.1)
        return None

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def scan_log(self, start: int = 0, samples: int = 3) -> LogScan:
        """
        Read the log from byte C{start} and count the lines that show a
        traceback, keeping the first C{samples} (cut to 300 characters).
        """
        scan = LogScan()
        with open(self.log_path, "rb") as f:
            f.seek(start)
            for line in f:
                scan.lines += 1
                if _is_traceback(line):
                    scan.traceback_lines += 1
                    if len(scan.samples) < samples:
                        scan.samples.append(line[:300].decode("utf-8", "replace").rstrip())
        return scan

    def idle_cpu(self, seconds: float = 1.0) -> float:
        """
        The server's CPU seconds over the next C{seconds}.
        """
        before = self.cpu_seconds()
        time.sleep(seconds)
        return self.cpu_seconds() - before

    # ------------------------------------------------------------- stop

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """
        SIGTERM, then SIGKILL after C{timeout} seconds; the exit status (as
        C{Popen.returncode}: negative for a signal), or C{None} when it was
        gone already.
        """
        already_dead = self.proc.poll() is not None
        if not already_dead:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self._log.close()
        return None if already_dead else self.returncode
