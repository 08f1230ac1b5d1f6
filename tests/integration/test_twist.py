"""
The C{twist amp-dispatch} plugin as a process: what it does when a listener
cannot listen.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from ._process import LIVENESS_TIMEOUT


@pytest_twisted.ensureDeferred
async def test_cannot_listen_stops(reactor: Any) -> None:
    """
    Under C{twist}, a listener that cannot listen (its port taken) is logged
    as C{cannot listen} and the process ends (it does not run on without
    listeners).
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        running = getProcessOutputAndValue(
            sys.executable,
            [
                "-m",
                "twisted",
                "--log-format",
                "text",
                "amp-dispatch",
                "--frontend",
                "tcp:0:interface=127.0.0.1",
                "--scheduler",
                f"tcp:{port}:interface=127.0.0.1",
                "--admin",
                "none",
            ],
            env=dict(os.environ),
            reactor=reactor,
        )
        running.addTimeout(LIVENESS_TIMEOUT, reactor)
        out, err, _ = await running
    assert b"cannot listen" in out + err
    assert b"Address already in use" in out + err
