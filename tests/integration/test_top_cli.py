"""
C{amp-dispatch top} as a process against the real dispatcher process: over
a pipe (one frame, as C{--once}) it prints the pools and the busiest workers;
a dispatcher that is not there is one line on stderr and exit status 1.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted

from tests._text import words

from ._process import DispatcherProcess, command_process, probe_process


async def registered(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    Workers C{w1} (2 free slots) and C{g1} (pool gpu, 4) registered, and one
    job given to C{g1}.
    """
    scheduler = ["--scheduler", dispatcher.scheduler, "--frontend", dispatcher.frontend]
    for update in (["w1", "10.0.0.1", "9000", "2"], ["g1", "10.0.1.1", "9000", "4"]):
        pool = ["--pool", "gpu"] if update[0] == "g1" else []
        assert (await probe_process(reactor, *scheduler, "update", *update, *pool))[2] == 0
    assert (await probe_process(reactor, *scheduler, "next", "--pool", "gpu"))[2] == 0


@pytest_twisted.ensureDeferred
async def test_once_prints_pools_and_workers(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    C{top --once} prints a row per pool, the totals and the busiest workers.
    """
    await registered(reactor, dispatcher)
    out, err, code = await command_process(
        reactor, "top", "--once", "--interval", "0.1", "--scheduler", dispatcher.scheduler
    )
    assert (err, code) == ("", 0)
    assert f"connected to {dispatcher.scheduler}" in out
    assert words(out, "default") == ["default", "1", "2", "0"]
    assert words(out, "gpu") == ["gpu", "1", "3", "1"]
    assert words(out, "all pools")[:5] == ["all", "pools", "2", "5", "1"]  # type: ignore[index]
    assert words(out, "g1")[:6] == ["g1", "gpu", "10.0.1.1:9000", "1", "3", "4"]  # type: ignore[index]
    assert out.index("g1 ") < out.index("w1 ")


@pytest_twisted.ensureDeferred
async def test_pipe_prints_one_frame(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    Without C{--once}, over a pipe, it prints one frame and exits too.
    """
    await registered(reactor, dispatcher)
    out, err, code = await command_process(
        reactor, "top", "--interval", "0.1", "--scheduler", dispatcher.scheduler
    )
    assert (err, code) == ("", 0)
    assert out.count("amp-dispatch top") == 1


def closed_port() -> int:
    """
    A loopback port nothing listens on.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest_twisted.ensureDeferred
async def test_unreachable_is_one_line(reactor: Any) -> None:
    """
    A dispatcher that is not there: one line on stderr naming the cause, no
    output, exit status 1.
    """
    endpoint = f"tcp:127.0.0.1:{closed_port()}"
    out, err, code = await command_process(reactor, "top", "--once", "--scheduler", endpoint)
    assert (out, code) == ("", 1)
    assert err.startswith(f"amp-dispatch top: cannot connect to {endpoint}: ")
    assert "refused" in err
    assert err.count("\n") == 1
