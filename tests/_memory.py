"""
In-memory connections to a dispatcher, for the protocol tests.

Each connection joins a real L{amp.AMP} client to a listener's server protocol
over L{twisted.test.iosim}, so every box is really serialized and parsed.  The
dispatcher's store runs on a L{Clock}; no reactor is involved.  Every call's
L{Deferred} is consumed at once by an L{Outcome} (AMP drops a connection whose
call fails unconsumed).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from functools import cache
from struct import pack
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterable,
    Iterator,
    List,
    MutableMapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    cast,
)

import pytest
from amp_dispatch_commands import InvalidArgument, ListWorkers, Stats, WorkerUpdate
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import FakeAddress, connectedServerAndClient

from amp_dispatch._records import RegisteredWorker
from amp_dispatch.protocol._hooks import ConnectionInfo
from amp_dispatch.server._config import MAX_BOX_BYTES, DispatcherConfig
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import IWorkerStore, WorkerReport
from amp_dispatch.store._memory import MemoryStore
from tests._stores import LaterStore

Result = Dict[str, Any]


def registered(store: MemoryStore, pool: Optional[str] = None) -> List[RegisteredWorker]:
    """
    Every worker registered in C{store} (of C{pool}), in id order.
    """
    return list(store.list_workers(pool, None, 1 << 30).workers)


class HandledCommands:
    """
    A L{CommandHook} that records what it is told.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[bytes, str, ConnectionInfo, int]] = []
        #: The rejected inputs, as (role, kind).
        self.rejections: List[Tuple[str, str]] = []
        #: The waits, in seconds.
        self.waits: List[float] = []

    def __call__(
        self, command: bytes, outcome: str, connection: ConnectionInfo, count: int
    ) -> None:
        self.calls.append((command, outcome, connection, count))

    def rejected(self, role: str, kind: str) -> None:
        self.rejections.append((role, kind))

    def waited(self, seconds: float) -> None:
        self.waits.append(seconds)

    def counts(self) -> Dict[Tuple[bytes, str], int]:
        """
        How many commands came to each outcome, by command and outcome (the
        fast paths tell several at once, the generic path one by one).
        """
        counts: Dict[Tuple[bytes, str], int] = {}
        for command, outcome, _, count in self.calls:
            counts[command, outcome] = counts.get((command, outcome), 0) + count
        return counts


class RecordingAMP(amp.AMP):
    """
    A plain AMP client that keeps every box it receives, as parsed off the
    wire (keys and values are bytes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: List[amp.AmpBox] = []

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        self.received.append(box)
        super().ampBoxReceived(box)


class Outcome:
    """
    The outcome of one call, its L{Deferred} consumed as soon as it is made.
    """

    def __init__(self, deferred: Deferred[Any]) -> None:
        self.done = False
        self._value: Any = None
        self._failure: Optional[Failure] = None
        deferred.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, value: Any) -> None:
        self.done = True
        self._value = value

    def _failed(self, failure: Failure) -> None:
        self.done = True
        self._failure = failure

    def result(self) -> Result:
        """
        The answer; raises the call's error if it failed.

        @raise AssertionError: the call has not been answered yet.
        """
        assert self.done, "the call has not been answered"
        if self._failure is not None:
            self._failure.raiseException()
        return cast(Result, self._value)


class Connection:
    """
    One in-memory connection: an AMP client talking to the protocol C{server}
    builds.
    """

    def __init__(self, server: Callable[[], Protocol]) -> None:
        self.client, self.server, self.pump = connectedServerAndClient(server, RecordingAMP)

    @classmethod
    def to(cls, factory: ServerFactory) -> Connection:
        """
        A connection to a protocol built by a listener's C{factory}.
        """
        return cls(lambda: cast(Protocol, factory.buildProtocol(FakeAddress())))

    def send(self, command: Type[amp.Command], **arguments: Any) -> Outcome:
        """
        Send a command and move every byte there is to move; the outcome may
        still be pending (a waiting call).
        """
        outcome = Outcome(self.client.callRemote(command, **arguments))
        self.flush()
        return outcome

    def tell(self, command: Type[amp.Command], **arguments: Any) -> None:
        """
        Send a command that asks for no answer, and move every byte there is
        to move.
        """
        assert not command.requiresAnswer
        self.client.callRemote(command, **arguments)
        self.flush()

    def call(self, command: Type[amp.Command], **arguments: Any) -> Result:
        """
        Send a command and return its answer at once; raises its error.
        """
        return self.send(command, **arguments).result()

    def flush(self) -> None:
        """
        Move bytes both ways until there are none left to move.
        """
        self.pump.flush()

    def close(self) -> None:
        """
        Close the connection from the client's side; both sides see it lost.
        """
        assert self.client.transport is not None
        self.client.transport.loseConnection()
        self.flush()

    @property
    def last_box(self) -> amp.AmpBox:
        """
        The last box the client received, as it came off the wire.
        """
        return self.client.received[-1]

    @property
    def open(self) -> bool:
        """
        Whether neither side has closed or begun closing the connection.
        """
        return not (self.pump.clientIO.disconnecting or self.pump.serverIO.disconnecting)


class RawDispatcher:
    """
    A dispatcher whose store runs on a L{Clock}, reached over in-memory
    connections by plain AMP clients (see L{amp_dispatch.testing} for one
    reached by the real clients).  Every command the listeners handle is
    recorded in C{handled}, as the hook sees it.

    @param fast_path: run the listeners' own protocols (the default, as
        served) or Twisted's generic AMP protocol.
    @param later: the listeners get the store's answers as Deferreds (see
        L{LaterStore}), as from a store in another process.
    """

    def __init__(
        self,
        lease_grace: float = 30.0,
        max_waiting: int = 10_000,
        *,
        max_waiting_per_connection: int = 1_000,
        fast_path: bool = True,
        later: bool = False,
    ) -> None:
        self.clock = Clock()
        config = DispatcherConfig(
            lease_grace=lease_grace,
            max_waiting=max_waiting,
            max_waiting_per_connection=max_waiting_per_connection,
        )
        self.store = open_memory_store(self.clock, config)
        store: IWorkerStore = LaterStore(self.store) if later else self.store
        self.handled = HandledCommands()
        self.listeners = build_listeners(
            store, self.clock, config, hook=self.handled, fast_path=fast_path
        )
        self._observer: Optional[Connection] = None

    def frontend(self) -> Connection:
        """
        A new connection to the front-end listener.
        """
        return Connection.to(self.listeners.frontend.factory)

    def scheduler(self) -> Connection:
        """
        A new connection to the scheduler listener.
        """
        return Connection.to(self.listeners.scheduler.factory)

    def _observe(self) -> Connection:
        # A scheduler connection of its own that never sends an update, so it
        # never owns a worker and reading through it changes nothing.
        if self._observer is None:
            self._observer = self.scheduler()
        return self._observer

    def stats(self) -> Result:
        """
        The dispatcher's C{Stats}.
        """
        return self._observe().call(Stats)

    def workers(self, pool: Optional[str] = None) -> List[Result]:
        """
        Every registered worker as C{ListWorkers} shows it, all pages.
        """
        rows: List[Result] = []
        after: Optional[str] = None
        while True:
            page = self._observe().call(ListWorkers, pool=pool, after=after, limit=500)
            rows.extend(page["workers"])
            after = page.get("next_after")
            if after is None:
                return rows

    def worker(self, worker_id: str) -> Result:
        """
        One registered worker's C{ListWorkers} row.
        """
        [row] = [row for row in self.workers() if row["worker_id"] == worker_id]
        return row

    def snapshot(self) -> Result:
        """
        Everything a caller can observe of the state: C{Stats} and every
        worker's row.
        """
        return {"stats": self.stats(), "workers": self.workers()}


def update(
    connection: Connection,
    worker_id: str,
    capacity: int = 1,
    host: str = "10.0.0.1",
    port: int = 9000,
    **optional: Any,
) -> bool:
    """
    Send a C{WorkerUpdate}; return C{accepted}.
    """
    answer = connection.call(
        WorkerUpdate, worker_id=worker_id, host=host, port=port, capacity=capacity, **optional
    )
    return cast(bool, answer["accepted"])


@cache
def lax(command: Type[amp.Command], answer: bool = True) -> Type[amp.Command]:
    """
    A hand-made twin of C{command}: the same name, answer and errors, but every
    argument raw bytes and optional, so a test can send any value (or none).
    With C{answer} false, its boxes ask for no answer (no C{_ask} key).
    """
    arguments = [(name, amp.String(optional=True)) for name, _ in command.arguments]
    namespace = {
        "commandName": command.commandName,
        "arguments": arguments,
        "response": command.response,
        "errors": dict(command.errors),
        "requiresAnswer": answer,
    }
    metaclass: Any = type(command)
    return cast(Type[amp.Command], metaclass("Lax" + command.__name__, (amp.Command,), namespace))


class Invalid(NamedTuple):
    """
    A call the dispatcher must answer with C{INVALID_ARGUMENT}.
    """

    role: str
    command: Type[amp.Command]
    arguments: Dict[str, bytes]
    field: str

    @property
    def id(self) -> str:
        value = self.arguments.get(self.field)
        shown = "missing" if value is None else repr(value)[2:-1][:24]
        return f"{self.command.__name__}-{self.field}-{shown}"


def invalid(
    role: str,
    command: Type[amp.Command],
    valid: Dict[str, bytes],
    field: str,
    value: Optional[bytes],
) -> Invalid:
    """
    The call of C{command} with C{valid} arguments but C{field} set to raw
    C{value} (left out when C{None}).
    """
    arguments = {name: raw for name, raw in valid.items() if name != field}
    if value is not None:
        arguments[field] = value
    return Invalid(role, command, arguments, field)


class InvalidArgumentChecks:
    """
    What every rejected call shows, on the fast and the generic listeners.
    Mixed into a test class whose C{case} fixture gives the L{Invalid} calls.
    """

    @pytest.fixture
    def memory(self, fast_path: bool) -> RawDispatcher:
        memory = RawDispatcher(fast_path=fast_path)
        update(memory.scheduler(), "w1", capacity=2)
        return memory

    @staticmethod
    def _connect(memory: RawDispatcher, case: Invalid) -> Connection:
        connection: Connection = getattr(memory, case.role)()
        return connection

    def test_answered_invalid_argument(self, memory: RawDispatcher, case: Invalid) -> None:
        """
        The caller gets C{InvalidArgument}, its message naming the field.
        """
        outcome = self._connect(memory, case).send(lax(case.command), **case.arguments)
        with pytest.raises(InvalidArgument, match=rf"\b{case.field}\b"):
            outcome.result()

    def test_nothing_changed(self, memory: RawDispatcher, case: Invalid) -> None:
        """
        A rejected call changes nothing that C{Stats} or C{ListWorkers} shows.
        """
        before = memory.snapshot()
        self._connect(memory, case).send(lax(case.command), **case.arguments)
        assert memory.snapshot() == before

    def test_connection_stays_usable(self, memory: RawDispatcher, case: Invalid) -> None:
        """
        The connection stays open and answers a valid call next.
        """
        connection = self._connect(memory, case)
        connection.send(lax(case.command), **case.arguments)
        assert connection.open
        assert connection.call(Stats)["protocol"] == 1

    def test_logged_once(self, memory: RawDispatcher, case: Invalid) -> None:
        """
        The rejection is logged once, at warning, with its reason.
        """
        connection = self._connect(memory, case)
        with capture_logs() as logs:
            connection.send(lax(case.command), **case.arguments)
        warnings = [log for log in logs if log["log_level"] == "warning"]
        assert [(log["event"], log["command"]) for log in warnings] == [
            ("input rejected", case.command.__name__)
        ]
        assert re.search(rf"\b{case.field}\b", warnings[0]["reason"])


# -- one listener connection over a StringTransport, for the fast-path tests --

#: A worker registered before any byte arrives: C{store.update}'s arguments.
Registration = Dict[str, Any]

_Side = TypeVar("_Side", bound="ListenerSide")


class CountingTransport(StringTransport):
    """
    A L{StringTransport} that counts its C{write} calls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class ListenerSide:
    """
    One connection to a listener (C{listener}: its role) over its own store,
    connected to a L{CountingTransport}; what it wrote, whether it dropped
    the connection, the error that escaped C{dataReceived}, the structlog
    events it logged and the commands its hook was told of are kept.
    """

    listener: ClassVar[str]

    def __init__(
        self,
        fast_path: bool,
        workers: Iterable[Registration] = (),
        *,
        lease_grace: float = 30.0,
        max_waiting: int = 10_000,
    ) -> None:
        self.clock = Clock()
        # The box limit at its highest: the generic path has none, and a
        # stream's garbage length may claim up to 64 KiB (the limit has its
        # own tests).
        config = DispatcherConfig(
            max_box_bytes=MAX_BOX_BYTES, lease_grace=lease_grace, max_waiting=max_waiting
        )
        self.store = open_memory_store(self.clock, config)
        with capture_logs():
            for registration in workers:
                self.store.update(WorkerReport(**registration))
        self.handled = HandledCommands()
        served = build_listeners(
            self.store, self.clock, config, hook=self.handled, fast_path=fast_path
        )
        factory: ServerFactory = getattr(served, self.listener).factory
        self.protocol = cast(Protocol, factory.buildProtocol(None))
        self.transport = CountingTransport()
        self.error: Optional[Tuple[Type[BaseException], Tuple[Any, ...]]] = None
        self.closed = False
        self.logs: List[MutableMapping[str, Any]] = []
        self._sent = 0
        with self._watch():
            self.protocol.makeConnection(self.transport)

    @classmethod
    def both(
        cls: Type[_Side], workers: Iterable[Registration] = (), **options: Any
    ) -> Tuple[_Side, _Side]:
        """
        A fast and a generic connection, over stores in the same state.
        """
        workers = list(workers)
        return cls(True, workers, **options), cls(False, workers, **options)

    @contextmanager
    def _watch(self) -> Iterator[None]:
        """
        Keep the structlog events logged while the block runs.
        """
        with capture_logs() as logs:
            try:
                yield
            finally:
                self.logs.extend(logs)

    def receive(self, data: bytes) -> None:
        """
        Deliver C{data} as one read, unless the connection is closing, and
        run the turns it leaves work for; as the reactor would, lose the
        connection after an error or a drop.
        """
        if self.closed:
            return
        with self._watch():
            try:
                self.protocol.dataReceived(data)
                # As the reactor's next turns would: the fast path's work
                # past a turn's budget is done then.
                self.clock.advance(0)
            except Exception as e:
                self.error = (type(e), e.args)
        if self.error is not None or self.transport.disconnecting:
            self.close()

    def advance(self, seconds: float) -> None:
        """
        Move the store's clock on (ttls and lease grace run out).
        """
        with self._watch():
            self.clock.advance(seconds)

    def close(self) -> None:
        """
        The connection is lost (once).
        """
        if self.closed:
            return
        self.closed = True
        self._sent = len(self.transport.value())
        with self._watch():
            self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def sent(self) -> bytes:
        """
        The bytes written while the connection was open.
        """
        written = cast(bytes, self.transport.value())
        return written[: self._sent] if self.closed else written

    @property
    def written_closing(self) -> object:
        """
        What was written while the connection was being lost (it reaches
        nobody).
        """
        return self.transport.value()[len(self.sent) :]

    @property
    def boxes(self) -> List[amp.AmpBox]:
        """
        The boxes written while the connection was open, parsed.
        """
        return cast(List[amp.AmpBox], amp._ParserHelper.parseString(self.sent))

    def observed(self) -> Dict[str, Any]:
        """
        Everything the fast and the generic listener must agree on.
        """
        return {
            "boxes": self.boxes,
            "bytes": self.sent,
            "written closing": self.written_closing,
            "dropped": self.transport.disconnecting,
            "error": self.error,
            "stats": self.store.stats(),
            "workers": registered(self.store),
            "handled": self.handled.counts(),
            "logs": self.logs,
        }


def assert_same(fast: ListenerSide, generic: ListenerSide) -> None:
    """
    The two listeners agree on everything observable.
    """
    seen_fast, seen_generic = fast.observed(), generic.observed()
    assert seen_fast.keys() == seen_generic.keys()
    for name in seen_fast:
        assert seen_fast[name] == seen_generic[name], name


def replay(
    fast: ListenerSide,
    generic: ListenerSide,
    stream: bytes,
    data: st.DataObject,
    events: st.SearchStrategy[Any],
) -> None:
    """
    Feed both listeners C{stream} in the same reads (cut where C{data}
    draws), after each read a step drawn from C{events} (C{None}, or a method
    name and its argument) for both; they must agree after every read and
    every step.
    """
    reads = split(stream, data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    for read in reads:
        for side in (fast, generic):
            side.receive(read)
        assert_same(fast, generic)
        step = data.draw(events)
        if step is not None:
            kind, argument = step
            for side in (fast, generic):
                getattr(side, kind)(argument)
            assert_same(fast, generic)


def encode(pairs: Iterable[Tuple[bytes, bytes]]) -> bytes:
    """
    A box of C{pairs} in the order given (repeats kept), as AMP frames it.
    """
    frames = [pack(">H", len(key)) + key + pack(">H", len(value)) + value for key, value in pairs]
    return b"".join(frames) + b"\x00\x00"


def split(stream: bytes, at: Sequence[int]) -> List[bytes]:
    """
    C{stream} cut at the offsets C{at}, as successive reads.
    """
    cuts = [0, *sorted(set(at)), len(stream)]
    return [stream[a:b] for a, b in zip(cuts, cuts[1:])]


TAGS = st.one_of(st.sampled_from([b"1", b"2", b"a"]), st.binary(max_size=5))
RESERVED_KEYS = st.sampled_from([b"_answer", b"_error"])
ANSWER_BOXES = st.builds(
    lambda tag, error: encode(
        [(b"_error", tag), (b"_error_code", b"X"), (b"_error_description", b"d")]
        if error
        else [(b"_answer", tag), (b"x", b"1")]
    ),
    TAGS,
    st.booleans(),
)
EMPTY_BOXES = st.just(b"\x00\x00")
KEYS_TOO_LONG = st.builds(lambda n, rest: pack(">H", n) + rest, st.integers(256, 65535), TAGS)
RAW_BYTES = st.binary(min_size=1, max_size=12)
#: What a well-behaved client does not send.
MALFORMED = st.one_of(ANSWER_BOXES, EMPTY_BOXES, KEYS_TOO_LONG, RAW_BYTES)


def with_extra_key(
    draw: st.DrawFn,
    pairs: List[Tuple[bytes, bytes]],
    kinds: st.SearchStrategy[str],
    unknown_keys: st.SearchStrategy[bytes],
    repeated: Callable[[bytes], st.SearchStrategy[bytes]],
) -> bytes:
    """
    The box of a command's C{pairs}, with an extra key of a kind drawn from
    C{kinds}: none, an unknown one, a repeat of one of C{pairs} (its value
    drawn from C{repeated(key)}) or a reserved one; its keys sorted (as
    Twisted's clients send them) or in any order.
    """
    extra = draw(kinds)
    if extra == "unknown":
        pairs.append((draw(unknown_keys), draw(st.binary(max_size=4))))
    elif extra == "repeated":
        key = draw(st.sampled_from([key for key, _ in pairs]))
        pairs.append((key, draw(repeated(key))))
    elif extra == "reserved":
        pairs.append((draw(RESERVED_KEYS), draw(TAGS)))
    pairs = sorted(pairs) if draw(st.booleans()) else draw(st.permutations(pairs))
    return encode(pairs)


@st.composite
def streams(
    draw: st.DrawFn,
    command_boxes: st.SearchStrategy[bytes],
    min_boxes: int,
    malformed_counts: Sequence[int],
) -> bytes:
    """
    At least C{min_boxes} of C{command_boxes}, with as many L{MALFORMED}
    pieces among them as drawn from C{malformed_counts} (empty boxes,
    answers, keys over 255 bytes, random bytes), and how the stream ends:
    after a whole box or in the middle of one.
    """
    boxes = draw(st.lists(command_boxes, min_size=min_boxes, max_size=20))
    for _ in range(draw(st.sampled_from(malformed_counts))):
        boxes.insert(draw(st.integers(0, len(boxes))), draw(MALFORMED))
    if draw(st.booleans()):
        box = draw(command_boxes)
        boxes.append(box[: draw(st.integers(1, len(box) - 1))])
    return b"".join(boxes)


#: The settings of the properties that compare a fast and a generic listener.
COMPARISON_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
