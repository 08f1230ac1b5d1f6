"""
The wire schema of protocol v1, pinned: command names, argument and answer
names and types, declared errors and their codes, as the issue lists them.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional, Tuple, Type

import amp_dispatch_commands
import pytest
from amp_dispatch_commands import (
    ERROR_CODES,
    FRONTEND_COMMANDS,
    PROTOCOL_VERSION,
    SCHEDULER_COMMANDS,
    DispatchError,
    InvalidArgument,
    ListWorkers,
    NextWorker,
    NoWorkerAvailable,
    Overloaded,
    Stats,
    StoreUnavailable,
    WorkerGone,
    WorkerUpdate,
)
from twisted.protocols import amp
from twisted.test.iosim import connectedServerAndClient

from tests._deferreds import failure_of
from tests._memory import Connection, RecordingAMP

#: (name, stock AMP type, optional)
Field = Tuple[str, Type[amp.Argument], bool]

ARGUMENTS: Dict[str, List[Field]] = {
    "WorkerUpdate": [
        ("worker_id", amp.Unicode, False),
        ("host", amp.Unicode, False),
        ("port", amp.Integer, False),
        ("capacity", amp.Integer, False),
        ("pool", amp.Unicode, True),
        ("seq", amp.Integer, True),
        ("ttl", amp.Float, True),
    ],
    "WorkerGone": [("worker_id", amp.Unicode, False)],
    "NextWorker": [("pool", amp.Unicode, True), ("timeout", amp.Float, True)],
    "Stats": [],
    "ListWorkers": [
        ("pool", amp.Unicode, True),
        ("after", amp.Unicode, True),
        ("limit", amp.Integer, True),
    ],
}

RESPONSES: Dict[str, List[Field]] = {
    "WorkerUpdate": [("accepted", amp.Boolean, False)],
    "WorkerGone": [("known", amp.Boolean, False)],
    "NextWorker": [
        ("worker_id", amp.Unicode, False),
        ("host", amp.Unicode, False),
        ("port", amp.Integer, False),
    ],
    "Stats": [
        ("workers", amp.Integer, False),
        ("free_slots", amp.Integer, False),
        ("waiting", amp.Integer, False),
        ("dispatched", amp.Integer, False),
        ("protocol", amp.Integer, False),
    ],
    "ListWorkers": [
        ("workers", amp.AmpList, False),
        ("next_after", amp.Unicode, True),
    ],
}

WORKER_ROW: List[Field] = [
    ("worker_id", amp.Unicode, False),
    ("host", amp.Unicode, False),
    ("port", amp.Integer, False),
    ("pool", amp.Unicode, False),
    ("capacity", amp.Integer, False),
    ("free", amp.Integer, False),
    ("expires_in", amp.Float, False),
]

COMMON: Dict[Type[Exception], bytes] = {
    InvalidArgument: b"INVALID_ARGUMENT",
    StoreUnavailable: b"STORE_UNAVAILABLE",
}
ERRORS: Dict[str, Dict[Type[Exception], bytes]] = {
    "WorkerUpdate": COMMON,
    "WorkerGone": COMMON,
    "NextWorker": {
        **COMMON,
        NoWorkerAvailable: b"NO_WORKER_AVAILABLE",
        Overloaded: b"OVERLOADED",
    },
    "Stats": COMMON,
    "ListWorkers": COMMON,
}

ALL_COMMANDS: List[Type[amp.Command]] = list(dict.fromkeys(FRONTEND_COMMANDS + SCHEDULER_COMMANDS))
COMMAND_IDS = [command.__name__ for command in ALL_COMMANDS]
commands = pytest.mark.parametrize("command", ALL_COMMANDS, ids=COMMAND_IDS)


def shape(fields: List[Tuple[bytes, amp.Argument]]) -> List[Field]:
    """
    Each field's name, the stock AMP type whose bytes it uses, and whether
    it is optional.
    """
    return [
        (name.decode("ascii"), wire_type(argument), argument.optional) for name, argument in fields
    ]


def wire_type(argument: amp.Argument) -> Type[amp.Argument]:
    """
    The nearest stock AMP type in C{argument}'s class hierarchy.
    """
    return next(
        base
        for base in type(argument).__mro__
        if base.__module__ == amp.__name__ and issubclass(base, amp.Argument)
    )


def class_body_names(command: Type[amp.Command]) -> List[str]:
    """
    The names assigned in C{command}'s class statement, read from its source.
    """
    [node] = ast.parse(textwrap.dedent(inspect.getsource(command))).body
    assert isinstance(node, ast.ClassDef)
    return [
        target.id
        for statement in node.body
        if isinstance(statement, (ast.Assign, ast.AnnAssign))
        for target in (
            statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        )
        if isinstance(target, ast.Name)
    ]


def test_listeners_serve_the_listed_commands() -> None:
    """
    The front-end listener's commands are NextWorker and Stats; the
    scheduler's WorkerUpdate, WorkerGone, ListWorkers and Stats.
    """
    assert (
        [c.__name__ for c in FRONTEND_COMMANDS],
        [c.__name__ for c in SCHEDULER_COMMANDS],
    ) == (["NextWorker", "Stats"], ["WorkerUpdate", "WorkerGone", "ListWorkers", "Stats"])


def test_every_command_listed() -> None:
    """
    Every command the package defines is served by a listener.
    """
    defined = {
        value
        for value in vars(amp_dispatch_commands).values()
        if isinstance(value, type) and issubclass(value, amp.Command)
    }
    assert defined == set(ALL_COMMANDS)


@commands
def test_command_name_pinned(command: Type[amp.Command]) -> None:
    """
    C{commandName} is assigned in the class statement itself.

    (AMP's metaclass puts a default C{commandName} in every command's
    C{__dict__}, so the class statement's source is what tells.)
    """
    assert "commandName" in class_body_names(command)


@commands
def test_command_name_is_class_name(command: Type[amp.Command]) -> None:
    """
    The wire name is the class name as bytes.
    """
    assert command.commandName == command.__name__.encode("ascii")


@commands
def test_arguments(command: Type[amp.Command]) -> None:
    """
    Argument names, wire types and optionality are exactly as listed.
    """
    assert shape(command.arguments) == ARGUMENTS[command.__name__]


@commands
def test_response(command: Type[amp.Command]) -> None:
    """
    Answer names, wire types and optionality are exactly as listed.
    """
    assert shape(command.response) == RESPONSES[command.__name__]


def test_worker_row() -> None:
    """
    A C{ListWorkers} row's fields are exactly as listed.
    """
    [workers] = [
        argument
        for name, argument in amp_dispatch_commands.ListWorkers.response
        if name == b"workers"
    ]
    assert isinstance(workers, amp.AmpList)
    assert shape(workers.subargs) == WORKER_ROW


@commands
def test_errors_in_class_body(command: Type[amp.Command]) -> None:
    """
    Each command declares C{errors} in its own class body.
    """
    assert "errors" in command.__dict__


@commands
def test_errors_declared(command: Type[amp.Command]) -> None:
    """
    Each command declares exactly its listed errors, with their codes.
    """
    assert command.errors == ERRORS[command.__name__]


@commands
def test_no_fatal_errors(command: Type[amp.Command]) -> None:
    """
    No command declares C{fatalErrors}: no error closes the connection.
    """
    assert command.fatalErrors == {}


@commands
def test_requires_answer(command: Type[amp.Command]) -> None:
    """
    Every command requires an answer.
    """
    assert command.requiresAnswer is True


def test_error_codes() -> None:
    """
    C{ERROR_CODES} maps each error class to its code.
    """
    assert dict(ERROR_CODES) == {
        NoWorkerAvailable: b"NO_WORKER_AVAILABLE",
        Overloaded: b"OVERLOADED",
        InvalidArgument: b"INVALID_ARGUMENT",
        StoreUnavailable: b"STORE_UNAVAILABLE",
    }


@pytest.mark.parametrize("error", list(ERROR_CODES), ids=lambda error: error.__name__)
def test_error_from_one_string(error: Type[Exception]) -> None:
    """
    Each error class is built from one string and gives it back.
    """
    message = "port: must be within 1..65535 \u00e9"
    assert str(error(message)) == message


class Raiser(amp.CommandLocator):
    """
    Answers C{NextWorker} by raising a given error.
    """

    def __init__(self, error: Exception) -> None:
        self.error = error

    @NextWorker.responder
    def next_worker(self, pool: object, timeout: object) -> object:
        raise self.error


@pytest.mark.parametrize("error", list(ERROR_CODES), ids=lambda error: error.__name__)
def test_error_crosses_wire(error: Type[Exception]) -> None:
    """
    Each error arrives at the caller as the same class with the same message.
    """
    message = "why: \u00e9 and more"

    class Server(amp.AMP):
        def __init__(self) -> None:
            super().__init__(locator=Raiser(error(message)))

    connection = Connection(Server)
    with pytest.raises(error) as raised:
        connection.call(NextWorker)
    assert (type(raised.value), str(raised.value)) == (error, message)


def test_protocol_version() -> None:
    """
    The schema describes protocol version 1.
    """
    assert PROTOCOL_VERSION == 1


def test_independent_of_server() -> None:
    """
    Importing C{amp_dispatch_commands} does not import C{amp_dispatch}.
    """
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            "import amp_dispatch_commands, sys; print('amp_dispatch' in sys.modules)",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert output.strip() == "False"


# -- a sender's bad value --------------------------------------------------------

WORKER = {"worker_id": "w1", "host": "10.0.0.1", "port": 9000, "capacity": 2}

#: (command, its arguments with one bad value, the error's message)
BAD_VALUES = [
    (
        WorkerUpdate,
        {**WORKER, "worker_id": "x" * 256},
        "worker_id: must be at most 255 UTF-8 bytes",
    ),
    (WorkerUpdate, {**WORKER, "host": ""}, "host: must not be empty"),
    (WorkerUpdate, {**WORKER, "port": 70000}, "port: must be within 1..65535"),
    (WorkerUpdate, {**WORKER, "capacity": "2"}, "capacity: must be an integer, not '2'"),
    (WorkerUpdate, {**WORKER, "ttl": -1.0}, "ttl: must not be negative"),
    (WorkerGone, {"worker_id": "w\n1"}, "worker_id: must not contain control characters"),
    (NextWorker, {"timeout": float("nan")}, "timeout: must be a finite number"),
    (ListWorkers, {"limit": 0}, "limit: must be within 1..500"),
    (WorkerUpdate, {**WORKER, "worker_id": 12345}, "worker_id: must be text, not int"),
    (WorkerUpdate, {**WORKER, "worker_id": None}, "worker_id: required"),
    (WorkerUpdate, {"worker_id": "w1", "host": "h", "port": 1}, "capacity: required"),
    (WorkerGone, {"worker_id": "w1", "color": 2}, "color: not an argument of WorkerGone"),
]


@pytest.mark.parametrize(
    "command, arguments, message", BAD_VALUES, ids=[message for _, _, message in BAD_VALUES]
)
def test_bad_value_raises_invalid_argument(
    command: Type[amp.Command], arguments: Dict[str, object], message: str
) -> None:
    """
    A bad value, a missing or an unknown argument given to a plain
    C{callRemote} fails with the declared L{InvalidArgument} (a
    L{DispatchError}), naming the field as the dispatcher would, and nothing
    is sent (raised, or the call's Deferred fails: AMP does either).
    """
    server = RecordingAMP()
    client, _, pump = connectedServerAndClient(lambda: server, amp.AMP)
    try:
        calling = client.callRemote(command, **arguments)
    except DispatchError as e:
        error: Optional[BaseException] = e
    else:
        error = failure_of(calling, DispatchError).value
    pump.flush()
    assert (type(error), str(error)) == (InvalidArgument, message)
    assert server.received == []


def stock(command: Type[amp.Command]) -> Type[amp.Command]:
    """
    C{command} with the stock AMP types its arguments' bytes are those of.
    """
    return type(
        "Stock" + command.__name__,
        (amp.Command,),
        {
            "commandName": command.commandName,
            "arguments": [
                (name, wire_type(each)(each.optional)) for name, each in command.arguments
            ],
        },
    )


GOOD_VALUES = [
    (WorkerUpdate, {**WORKER, "pool": "gpu", "seq": -5, "ttl": 30.0}),
    (WorkerGone, {"worker_id": "w\u00e91"}),
    (NextWorker, {"pool": "gpu", "timeout": 2.5}),
    (ListWorkers, {"pool": "gpu", "after": "w1", "limit": 10}),
    (Stats, {}),
]


def sent(command: Type[amp.Command], arguments: Dict[str, object]) -> List[amp.AmpBox]:
    """
    The boxes a plain C{callRemote} of C{command} delivers, as received.
    """
    server = RecordingAMP()
    client, _, pump = connectedServerAndClient(lambda: server, amp.AMP)
    client.callRemote(command, **arguments).addErrback(lambda _: None)
    pump.flush()
    return server.received


@pytest.mark.parametrize(
    "command, arguments", GOOD_VALUES, ids=[command.__name__ for command, _ in GOOD_VALUES]
)
def test_good_value_sent_as_stock_types_send_it(
    command: Type[amp.Command], arguments: Dict[str, object]
) -> None:
    """
    A good value leaves as the box the stock AMP types make of it.
    """
    boxes = sent(command, arguments)
    assert len(boxes) == 1
    assert boxes == sent(stock(command), arguments)
