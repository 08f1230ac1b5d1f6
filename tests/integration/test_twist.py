"""
The C{twist amp-dispatch} plugin as a process: what it does when a listener
cannot listen.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import os
import sys
from typing import Any

import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from ._process import LIVENESS_TIMEOUT


@pytest_twisted.ensureDeferred
async def test_cannot_listen_stops(reactor: Any) -> None:
    """
    Under C{twist}, a listener that cannot listen is logged as C{cannot
    listen} and the process ends (it does not run on without listeners).
    """
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
            "mtls:0:interface=127.0.0.1",
        ],
        env=dict(os.environ),
        reactor=reactor,
    )
    running.addTimeout(LIVENESS_TIMEOUT, reactor)
    out, err, _ = await running
    assert b"cannot listen" in out + err
    assert b"certKey: missing" in out + err
