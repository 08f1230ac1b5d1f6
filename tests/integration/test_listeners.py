"""
What each listener of the real dispatcher process refuses, over raw AMP
connections: commands of the other listener, and malformed arguments.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Tuple, Type

import pytest
import pytest_twisted
from amp_dispatch_commands import (
    InvalidArgument,
    ListWorkers,
    NextWorker,
    Stats,
    WorkerGone,
    WorkerUpdate,
)
from twisted.protocols import amp

from ._process import DispatcherProcess, RawAMP, call_remote

Connect = Callable[[int], Awaitable[RawAMP]]

WORKER = {"worker_id": "a", "host": "127.0.0.1", "port": 9001, "capacity": 1}


@pytest_twisted.ensureDeferred
async def test_scheduler_commands_unhandled_on_frontend(
    reactor: Any, dispatcher: DispatcherProcess, amp_connect: Connect
) -> None:
    """
    WorkerUpdate, WorkerGone and ListWorkers sent to the front-end listener
    are answered with AMP's unhandled-command error, change nothing and keep
    the connection: a front end can never register or remove a worker.
    """
    scheduler = await amp_connect(dispatcher.scheduler_port)
    frontend = await amp_connect(dispatcher.frontend_port)
    await call_remote(reactor, scheduler, WorkerUpdate, **WORKER)
    refused: List[Tuple[Type[amp.Command], Dict[str, Any]]] = [
        (WorkerUpdate, dict(WORKER, worker_id="b")),
        (WorkerUpdate, dict(WORKER, capacity=5)),
        (WorkerGone, {"worker_id": "a"}),
        (ListWorkers, {}),
    ]
    for command, arguments in refused:
        with pytest.raises(amp.UnhandledCommand):
            await call_remote(reactor, frontend, command, **arguments)
    stats = await call_remote(reactor, frontend, Stats)
    assert (stats["workers"], stats["free_slots"]) == (1, 1)
    listed = await call_remote(reactor, scheduler, ListWorkers)
    assert [(row["worker_id"], row["capacity"]) for row in listed["workers"]] == [("a", 1)]
    assert frontend.connected


@pytest_twisted.ensureDeferred
async def test_next_worker_unhandled_on_scheduler(
    reactor: Any, dispatcher: DispatcherProcess, amp_connect: Connect
) -> None:
    """
    NextWorker sent to the scheduler listener is answered with AMP's
    unhandled-command error, takes no slot and keeps the connection.
    """
    scheduler = await amp_connect(dispatcher.scheduler_port)
    await call_remote(reactor, scheduler, WorkerUpdate, **WORKER)
    with pytest.raises(amp.UnhandledCommand):
        await call_remote(reactor, scheduler, NextWorker)
    stats = await call_remote(reactor, scheduler, Stats)
    assert (stats["workers"], stats["free_slots"], stats["dispatched"]) == (1, 1, 0)
    assert scheduler.connected


class LooseWorkerUpdate(amp.Command):
    """
    WorkerUpdate with every argument optional text, to send what the schema
    would refuse to.
    """

    commandName = b"WorkerUpdate"
    arguments = [
        (name, amp.Unicode(optional=True))
        for name in (b"worker_id", b"host", b"port", b"capacity", b"pool", b"seq", b"ttl")
    ]
    response = [(b"accepted", amp.Boolean())]
    errors = {InvalidArgument: b"INVALID_ARGUMENT"}


class LooseListWorkers(amp.Command):
    """
    ListWorkers with every argument optional text.
    """

    commandName = b"ListWorkers"
    arguments = [(name, amp.Unicode(optional=True)) for name in (b"pool", b"after", b"limit")]
    response = [(b"workers", amp.AmpList([(b"worker_id", amp.Unicode())]))]
    errors = {InvalidArgument: b"INVALID_ARGUMENT"}


class LooseNextWorker(amp.Command):
    """
    NextWorker with every argument optional text.
    """

    commandName = b"NextWorker"
    arguments = [(name, amp.Unicode(optional=True)) for name in (b"pool", b"timeout")]
    response = [(b"worker_id", amp.Unicode())]
    errors = {InvalidArgument: b"INVALID_ARGUMENT"}


GOOD_UPDATE = {"worker_id": "w", "host": "127.0.0.1", "port": "9001", "capacity": "1"}

#: (command, arguments, the field the error must name)
MALFORMED_SCHEDULER: List[Tuple[Type[amp.Command], Dict[str, str], str]] = [
    (LooseWorkerUpdate, dict(GOOD_UPDATE, port="abc"), "port"),
    (LooseWorkerUpdate, {k: v for k, v in GOOD_UPDATE.items() if k != "capacity"}, "capacity"),
    (LooseWorkerUpdate, {k: v for k, v in GOOD_UPDATE.items() if k != "worker_id"}, "worker_id"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, port="0"), "port"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, port="65536"), "port"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, capacity="-1"), "capacity"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, worker_id=""), "worker_id"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, worker_id="w\x07"), "worker_id"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, worker_id="\u00e9" * 128), "worker_id"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, host=""), "host"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, host="h" * 256), "host"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, pool=""), "pool"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, seq="x"), "seq"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, ttl="-1"), "ttl"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, ttl="nan"), "ttl"),
    (LooseWorkerUpdate, dict(GOOD_UPDATE, ttl="inf"), "ttl"),
    (LooseListWorkers, {"limit": "0"}, "limit"),
    (LooseListWorkers, {"limit": "501"}, "limit"),
]

MALFORMED_FRONTEND: List[Tuple[Type[amp.Command], Dict[str, str], str]] = [
    (LooseNextWorker, {"timeout": "-1"}, "timeout"),
    (LooseNextWorker, {"timeout": "nan"}, "timeout"),
    (LooseNextWorker, {"timeout": "soon"}, "timeout"),
    (LooseNextWorker, {"pool": ""}, "pool"),
]


async def check_malformed(
    reactor: Any,
    connection: RawAMP,
    cases: List[Tuple[Type[amp.Command], Dict[str, str], str]],
) -> None:
    for command, arguments, field in cases:
        case = f"{command.commandName.decode()} {arguments!r}"
        with pytest.raises(InvalidArgument) as raised:
            await call_remote(reactor, connection, command, **arguments)
        assert str(raised.value).startswith(field), f"{case}: {raised.value}"
        assert connection.connected, case


@pytest_twisted.ensureDeferred
async def test_malformed_scheduler_input_invalid_argument(
    reactor: Any, dispatcher: DispatcherProcess, amp_connect: Connect
) -> None:
    """
    Scheduler commands with arguments missing, unparseable or out of range
    are answered INVALID_ARGUMENT naming the field; they change nothing and
    the connection stays open and usable.
    """
    connection = await amp_connect(dispatcher.scheduler_port)
    await check_malformed(reactor, connection, MALFORMED_SCHEDULER)
    assert (await call_remote(reactor, connection, Stats))["workers"] == 0
    answer = await call_remote(reactor, connection, LooseWorkerUpdate, **GOOD_UPDATE)
    assert answer["accepted"] is True
    assert (await call_remote(reactor, connection, Stats))["workers"] == 1
    rejected = await dispatcher.log.wait_for({"event": "input rejected", "role": "scheduler"})
    assert rejected["reason"].startswith("port")


@pytest_twisted.ensureDeferred
async def test_malformed_frontend_input_invalid_argument(
    reactor: Any, dispatcher: DispatcherProcess, amp_connect: Connect
) -> None:
    """
    NextWorker with an unparseable or out-of-range argument is answered
    INVALID_ARGUMENT naming the field, takes no slot, and the connection stays
    open and usable.
    """
    scheduler = await amp_connect(dispatcher.scheduler_port)
    await call_remote(reactor, scheduler, WorkerUpdate, **WORKER)
    connection = await amp_connect(dispatcher.frontend_port)
    await check_malformed(reactor, connection, MALFORMED_FRONTEND)
    stats = await call_remote(reactor, connection, Stats)
    assert (stats["free_slots"], stats["dispatched"], stats["waiting"]) == (1, 0, 0)
    answer = await call_remote(reactor, connection, NextWorker)
    assert answer["worker_id"] == "a"
