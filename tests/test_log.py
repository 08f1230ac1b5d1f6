"""
The library's logging: silent in an application that configures no logging,
through the standard library's C{logging} in one that configures it, through
structlog when structlog is configured.  The first two run a small
application in a new Python process (this suite configures structlog).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
from typing import Any, List, MutableMapping

from amp_dispatch._log import get_logger

#: A front end whose dispatcher is down: its call fails (the library logs
#: the failure, at debug) and it says so itself.
APPLICATION = """
import sys

from twisted.internet.task import react

from amp_dispatch.client import DispatcherUnavailable, FrontendClient


async def main(reactor):
    client = FrontendClient(reactor, sys.argv[1])
    client.start()
    try:
        await client.next_worker()
    except DispatcherUnavailable:
        print("dispatcher unavailable")
    finally:
        await client.stop()


react(main)
"""


def refused_endpoint() -> str:
    """
    A loopback endpoint nobody listens on (a port just freed).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp:127.0.0.1:{port}"


def run_application(set_up: str = "") -> subprocess.CompletedProcess[str]:
    """
    Run L{APPLICATION}, after C{set_up}, against a refused endpoint.
    """
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(set_up) + APPLICATION, refused_endpoint()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_silent_without_logging_configured() -> None:
    """
    An application that configures no logging sees nothing from the
    library: only its own output.
    """
    ran = run_application()
    assert (ran.stdout, ran.stderr) == ("dispatcher unavailable\n", "")


def test_standard_logging_gets_events() -> None:
    """
    An application that configures the standard library's C{logging} gets
    the library's events there, under C{amp_dispatch.*}, with their fields.
    """
    ran = run_application(
        """
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
        """
    )
    assert ran.stdout == "dispatcher unavailable\n"
    assert (
        "amp_dispatch.client DEBUG dispatcher call failed role='frontend' command='NextWorker'"
        in ran.stderr
    )


def test_structlog_gets_events_when_configured(
    logs: List[MutableMapping[str, Any]],
) -> None:
    """
    With structlog configured (as this suite does), events go through it,
    at every level it lets through, with their fields.
    """
    log = get_logger("amp_dispatch.test")
    log.debug("one", a=1)
    log.log(logging.INFO, "two")
    assert [(e["event"], e["log_level"]) for e in logs] == [("one", "debug"), ("two", "info")]
    assert logs[0]["a"] == 1
