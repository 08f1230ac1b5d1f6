"""
The README's client example, run as it is written there (a new Python
process) against a real dispatcher, and against none.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, List

import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from ._process import LIVENESS_TIMEOUT, DispatcherProcess

README = Path(__file__).parent.parent.parent / "README.md"


def readme_example() -> str:
    """
    The Python example of the README's section on the client libraries.
    """
    section = README.read_text().split("## Client libraries", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


async def run_example(reactor: Any, frontend: str, scheduler: str) -> List[str]:
    """
    Run the example with its endpoints set; the lines it prints (it must
    exit 0 and print nothing on stderr).
    """
    env = {**os.environ, "AMP_DISPATCH_FRONTEND": frontend, "AMP_DISPATCH_SCHEDULER": scheduler}
    running = getProcessOutputAndValue(
        sys.executable, ["-c", readme_example()], env=env, reactor=reactor
    )
    running.addTimeout(LIVENESS_TIMEOUT, reactor)
    out, err, code = await running
    assert (err.decode(), code) == ("", 0)
    lines: List[str] = out.decode().splitlines()
    return lines


@pytest_twisted.ensureDeferred
async def test_example_against_dispatcher(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    Against a dispatcher, the example registers a worker, gets it, then
    finds no worker free.
    """
    lines = await run_example(reactor, dispatcher.frontend, dispatcher.scheduler)
    assert lines == [
        "next job: w1 at 10.0.0.1:9000",
        "no worker: no worker of pool 'default' has a free slot",
    ]


@pytest_twisted.ensureDeferred
async def test_example_without_dispatcher(reactor: Any) -> None:
    """
    With nothing listening, the example says at once that the dispatcher is
    unavailable, and why.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp:127.0.0.1:{port}"
    lines = await run_example(reactor, endpoint, endpoint)
    assert len(lines) == 1
    assert lines[0].startswith(f"dispatcher unavailable: cannot connect to {endpoint}: ")
    assert "Connection refused" in lines[0]
