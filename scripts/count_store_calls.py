"""
Store CPU per call of the shared store's scripts, in instructions: starts a
Redis or Valkey server under valgrind's callgrind on a free loopback port,
registers workers, then counts the server's instructions over each phase
(the counters zeroed and dumped with callgrind_control around it), which is
the same for the same build and inputs whatever else the machine does:

    python scripts/count_store_calls.py --workers 20000
    python scripts/count_store_calls.py --server valkey-server --workers 20000
    python scripts/count_store_calls.py --workers 20000 --ttl 60
    python scripts/count_store_calls.py --keep /tmp/profiles   # then callgrind_annotate

Phases: C{register} (new workers), C{update} (updates of registered
workers), C{take} (answers, round robin over the workers), as a replica
sends them: updates from a scheduler connection (an owner), every worker
with a ttl when C{--ttl} is given.  Also the store's memory per worker
(C{used_memory} after registering minus before, over the workers).  Calls go out
pipelined, 500 at a time, over one connection; what is counted includes
reading and answering them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amp_dispatch.store._redis_scripts import scripts
from amp_dispatch.store._resp import PythonReader, Value, encode_command
from tests._store_servers import free_port, server_options

BATCH = 500
SCRIPTS = scripts()
REPLICA = "r1.0"
OWNER = f"{REPLICA}:1"


class Client:
    """
    A blocking RESP client: sends a batch of commands, reads their replies.
    """

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.reader = PythonReader()

    def run(self, commands: List[bytes]) -> List[object]:
        self.socket.sendall(b"".join(commands))
        replies: List[object] = []
        while len(replies) < len(commands):
            self.reader.feed(self.socket.recv(1 << 20))
            reply = self.reader.gets()
            while reply is not False:
                replies.append(reply)
                reply = self.reader.gets()
        return replies


def batches(commands: Iterator[bytes]) -> Iterator[List[bytes]]:
    batch: List[bytes] = []
    for command in commands:
        batch.append(command)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def script(name: str, *arguments: Value) -> bytes:
    return encode_command("EVALSHA", SCRIPTS[name].sha, 0, *arguments)


def count(
    control: List[str],
    out: Path,
    client: Client,
    commands: Iterator[bytes],
    keep: Optional[Path] = None,
) -> int:
    """
    The server's instructions while it runs C{commands} (the profile kept at
    C{keep}, for C{callgrind_annotate}, if given).
    """
    subprocess.run([*control, "--zero"], check=True, capture_output=True)
    for batch in batches(commands):
        client.run(batch)
    for old in out.parent.glob(out.name + ".*"):
        old.unlink()
    subprocess.run([*control, "--dump"], check=True, capture_output=True)
    time.sleep(0.5)
    [dump] = list(out.parent.glob(out.name + ".*"))
    if keep is not None:
        shutil.copyfile(dump, keep)
    match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    assert match is not None, "no totals in the dump"
    return int(match.group(1))


def used_memory(client: Client) -> int:
    """
    The server's C{used_memory} (INFO memory), in bytes.
    """
    [info] = client.run([encode_command("INFO", "memory")])
    assert isinstance(info, bytes)
    match = re.search(rb"^used_memory:(\d+)", info, re.MULTILINE)
    assert match is not None, "no used_memory in INFO"
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="redis-server", help="the server binary")
    parser.add_argument("--workers", type=int, default=20_000)
    parser.add_argument("--ttl", type=float, default=0.0, help="every worker's ttl (s)")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each phase's profile in this directory (callgrind_annotate PHASE.out)",
    )
    options = parser.parse_args()
    binary = shutil.which(options.server) or options.server
    port = free_port()
    directory = Path(tempfile.mkdtemp())
    out = directory / "callgrind.out"
    server = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            binary,
            *server_options(port, directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    control = ["callgrind_control", str(server.pid)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client.run([encode_command("SCRIPT", "LOAD", each.source) for each in SCRIPTS.values()])
        client.run([script("join", REPLICA, 3_600_000)])
        n = options.workers
        ids = [f"w{i:07d}" for i in range(n)]
        ttl = round(options.ttl * 1000) if options.ttl else ""

        def updates() -> Iterator[bytes]:
            for w in ids:
                yield script(
                    "update", w, "10.0.0.1", 9000, 10**9, "default", "", ttl, OWNER, REPLICA
                )

        keep = options.keep
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)

        def kept(phase: str) -> Optional[Path]:
            return None if keep is None else keep / f"{phase}.out"

        before = used_memory(client)
        register = count(control, out, client, updates(), kept("register"))
        memory = (used_memory(client) - before) / n
        update = count(control, out, client, updates(), kept("update"))
        takes = (script("next", "default", "", REPLICA) for _ in ids)
        take = count(control, out, client, takes, kept("take"))
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        print(version.split(" sha=")[0].strip())
        for name, total in (("register", register), ("update", update), ("take", take)):
            print(f"{name}: {total / n:,.0f} instructions per call ({n:,} calls)")
        print(f"memory: {memory:,.0f} bytes per worker (used_memory)")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
