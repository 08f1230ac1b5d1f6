"""
The C{amp-dispatch probe} command against the real dispatcher process: what a
new user does from the README (register workers with the probe, get them back
in the right order) and the exit codes scripts rely on.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import json
from typing import Any, Tuple

import pytest_twisted

from ._process import DispatcherProcess, probe_process


async def probe(reactor: Any, dispatcher: DispatcherProcess, *argv: str) -> Tuple[str, str, int]:
    """
    Run C{amp-dispatch probe} against C{dispatcher}'s listeners; its stdout,
    stderr and exit status.
    """
    endpoints = ["--frontend", dispatcher.frontend, "--scheduler", dispatcher.scheduler]
    return await probe_process(reactor, *endpoints, *argv)


async def answer(reactor: Any, dispatcher: DispatcherProcess, *argv: str) -> str:
    """
    The probe's stdout, which must come with exit status 0 and no stderr.
    """
    out, err, code = await probe(reactor, dispatcher, *argv)
    assert (err, code) == ("", 0)
    return out


@pytest_twisted.ensureDeferred
async def test_workers_from_probe_come_back_most_able_first(
    reactor: Any, dispatcher: DispatcherProcess
) -> None:
    """
    Workers registered with C{probe update} come back from C{probe next}
    most free slots first, then the one never answered.
    """
    assert await answer(reactor, dispatcher, "update", "w1", "10.0.0.1", "9000", "2") == (
        "accepted\n"
    )
    assert await answer(reactor, dispatcher, "update", "w2", "10.0.0.2", "9000", "3") == (
        "accepted\n"
    )
    assert await answer(reactor, dispatcher, "next") == "w2 10.0.0.2:9000\n"
    assert await answer(reactor, dispatcher, "next") == "w1 10.0.0.1:9000\n"


@pytest_twisted.ensureDeferred
async def test_list_shows_registered_workers(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    C{probe list} shows each worker with its pool, address, capacity and
    free slots.
    """
    await answer(reactor, dispatcher, "update", "w1", "10.0.0.1", "9000", "2", "--pool", "gpu")
    await answer(reactor, dispatcher, "update", "w2", "10.0.0.2", "9000", "3")
    await answer(reactor, dispatcher, "next", "--pool", "gpu")
    lines = (await answer(reactor, dispatcher, "list")).splitlines()
    assert [line.split()[:5] for line in lines] == [
        ["worker_id", "pool", "address", "capacity", "free"],
        ["w1", "gpu", "10.0.0.1:9000", "2", "1"],
        ["w2", "default", "10.0.0.2:9000", "3", "3"],
    ]


@pytest_twisted.ensureDeferred
async def test_stats_json(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    C{probe stats --json} prints the dispatcher's counters as one object.
    """
    await answer(reactor, dispatcher, "update", "w1", "10.0.0.1", "9000", "2")
    await answer(reactor, dispatcher, "next")
    stats = json.loads(await answer(reactor, dispatcher, "stats", "--json"))
    assert stats == {"workers": 1, "free_slots": 1, "waiting": 0, "dispatched": 1, "protocol": 1}


@pytest_twisted.ensureDeferred
async def test_removed_worker_is_not_answered(reactor: Any, dispatcher: DispatcherProcess) -> None:
    """
    After C{probe gone}, C{probe next} exits 1 with C{NO_WORKER_AVAILABLE}.
    """
    await answer(reactor, dispatcher, "update", "w1", "10.0.0.1", "9000", "2")
    assert await answer(reactor, dispatcher, "gone", "w1") == "removed\n"
    assert await probe(reactor, dispatcher, "next") == (
        "",
        "amp-dispatch probe: NO_WORKER_AVAILABLE: no worker of pool 'default' has a free slot\n",
        1,
    )


@pytest_twisted.ensureDeferred
async def test_update_refused_on_frontend_listener(
    reactor: Any, dispatcher: DispatcherProcess
) -> None:
    """
    An update sent to the front-end listener fails with C{UNHANDLED} (exit
    1) and registers nothing.
    """
    argv = ["--scheduler", dispatcher.frontend, "update", "w1", "10.0.0.1", "9000", "2"]
    out, err, code = await probe(reactor, dispatcher, *argv)
    assert (out, code) == ("", 1)
    assert err.startswith("amp-dispatch probe: UNHANDLED: ")
    assert json.loads(await answer(reactor, dispatcher, "stats", "--json"))["workers"] == 0
