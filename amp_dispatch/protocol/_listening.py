"""
The listeners' protocols, with fast paths for C{NextWorker}, C{WorkerUpdate}
and C{Stats}.

Twisted's generic AMP machinery (L{amp.BinaryBoxProtocol} parsing through
L{IntNStringReceiver}, L{amp.BoxDispatcher}, argument objects, a Deferred per
call) costs about 20 us of CPU per box.  Here a C{NextWorker} box that asks
for an answer and finds a free slot (or answers C{NO_WORKER_AVAILABLE} at
once), a C{WorkerUpdate} whose arguments are valid, and a C{Stats} are
parsed, handled and answered in one loop, and all the answers to one read go
out in one write.  The bytes on the wire are those the generic path sends:
keys sorted, as L{amp.AmpBox.serialize} writes them.  Arguments are checked
by the schema's own argument types.

Every other box (other commands, bad arguments, a call that must wait, a box
without C{_ask} or holding C{_answer}/C{_error}, empty boxes) goes to the
role's responder that the generic protocol uses, so there is one
implementation of everything but the hot paths.  Framing (L{_framing}) follows
L{amp.BinaryBoxProtocol}: a key longer than 255 bytes drops the connection
(L{amp.TooLong}), an empty key ends a box, a repeated key keeps its last
value; and a box longer than the listener's limit drops it too.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Dict, List, Optional, Tuple, cast

import structlog
from amp_dispatch_commands import (
    DEFAULT_POOL,
    NO_WORKER_AVAILABLE,
    PROTOCOL_VERSION,
    NextWorker,
    Stats,
    WorkerUpdate,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from ..server._listener import ListenerFactory
from ..store._memory import WorkerQueue, no_free_slot
from ._addresses import describe, no_delay
from ._answers import encode_worker
from ._framing import END, BoxReader, FramingError, KeyTooLong, encode_pair, pack_length, read_pairs
from ._peerlog import shown
from ._receivers import FrontendResponder, SchedulerResponder, _RoleResponder

_log = structlog.get_logger("amp_dispatch.protocol")
_twisted_log = Logger()

Box = Dict[bytes, bytes]

_ANSWER = b"\x00\x07_answer"
_ERROR = b"\x00\x06_error"
_NO_WORKER_CODE = (
    b"\x00\x0b_error_code" + pack_length(len(NO_WORKER_AVAILABLE)) + NO_WORKER_AVAILABLE
)
_DESCRIPTION = b"\x00\x12_error_description"

_ASK_KEY = b"\x00\x04_ask"
_COMMANDEND = b"\x00\x08_command\x00\x0aNextWorker\x00\x00"
_COMMAND_ASK_KEY = b"\x00\x08_command\x00\x0aNextWorker\x00\x04_ask"
# Where the tag starts, after the key and the tag's length.
_ASK_TAG_AT = len(_ASK_KEY) + 2
_COMMAND_ASK_TAG_AT = len(_COMMAND_ASK_KEY) + 2
_CONNECTION_LOST = Failure(ConnectionLost())

_ACCEPTED = b"\x00\x08accepted\x00\x04True\x00\x00"
_NOT_ACCEPTED = b"\x00\x08accepted\x00\x05False\x00\x00"
_PROTOCOL = encode_pair(b"protocol", b"%d" % (PROTOCOL_VERSION,))

# The schema's argument types, which check each value.
_NEXT_WORKER_ARGUMENTS: Dict[bytes, amp.Argument] = dict(NextWorker.arguments)
_UPDATE_ARGUMENTS: Dict[bytes, amp.Argument] = dict(WorkerUpdate.arguments)
_pool = _NEXT_WORKER_ARGUMENTS[b"pool"]
_timeout_argument = _NEXT_WORKER_ARGUMENTS[b"timeout"]
_worker_id = _UPDATE_ARGUMENTS[b"worker_id"]
_host = _UPDATE_ARGUMENTS[b"host"]
_port = _UPDATE_ARGUMENTS[b"port"]
_capacity = _UPDATE_ARGUMENTS[b"capacity"]
_update_pool = _UPDATE_ARGUMENTS[b"pool"]
_seq = _UPDATE_ARGUMENTS[b"seq"]
_ttl = _UPDATE_ARGUMENTS[b"ttl"]

# Pool names already checked, by their bytes on the wire (bounded: any client
# may send any name).
_pool_names: Dict[bytes, str] = {}
_POOL_NAMES_KEPT = 4096


def _pool_name(raw: Optional[bytes]) -> Optional[str]:
    """
    The pool a C{NextWorker} names, or C{None} if the name is not valid.
    """
    if raw is None:
        return DEFAULT_POOL
    name = _pool_names.get(raw)
    if name is None:
        try:
            name = _pool.fromString(raw)
        except ValueError:
            return None
        if len(_pool_names) >= _POOL_NAMES_KEPT:
            _pool_names.clear()
        _pool_names[raw] = name
    return name


def _timeout(raw: bytes) -> Optional[float]:
    """
    A C{NextWorker}'s C{timeout}, or C{None} if it is not valid.
    """
    try:
        value: float = _timeout_argument.fromString(raw)
    except ValueError:
        return None
    return value


#: Work one connection may do per reactor turn, in boxes answered on the
#: fast path (about 1.5-2.5 us each on CPython): once spent, the connection
#: stops reading and goes on at the next turn, after the other connections.
TURN_BUDGET = 1024
#: The cost of a box handled by the generic path, in the same units (about
#: 25 us for an invalid call on CPython, measured; 64 keeps a flood of them
#: from holding a turn for more than a millisecond or two).
GENERIC_COST = 64
#: Boxes whose cost is higher still: a C{ListWorkers} page of 500 rows
#: (about 2 to 3 ms on CPython, 1 ms on PyPy) is worth two turns: the
#: connection sits the next one out (work past a turn's budget is a debt
#: paid out of the next turns while it has more to do).
COMMAND_COSTS = {b"ListWorkers": 2 * TURN_BUDGET}
#: A box parsed into a dict costs one unit more per this many of its bytes
#: past L{FREE_BOX_BYTES} (parsing its pairs is the work then: a 16 KiB box
#: of one-byte pairs takes about 2 ms).
BYTES_PER_UNIT = 16
FREE_BOX_BYTES = 256


@implementer(amp.IBoxSender, IPushProducer, IHandshakeListener)
class _FastBoxProtocol(Protocol):
    """
    AMP framing with a fast path: each complete box whose command has a
    handler in L{_fast} is answered by it (the encoded answer, or C{None} to
    leave it to the generic path); every other box goes to the role's
    generic responder.  Answers to one read go out in one write, in order
    with the generic path's.

    B{Limits.}  Boxes are read incrementally (L{_framing}), at most
    C{max_box_bytes} each: a longer one, or a key over 255 bytes, closes the
    connection with one warning.  Work per reactor turn is bounded by
    L{TURN_BUDGET}: past it, the connection stops reading and handles the
    rest of what it read at the next turn.  The protocol is its transport's
    producer: when the answers it wrote pile up unread (the transport's
    buffer is full), it stops reading until they drain, so a peer that never
    reads cannot make it buffer without end.  With an C{idle_timeout}, a
    connection with nothing received for that long and no call waiting is
    closed.  On a TLS transport the AMP layer starts only once the handshake
    is done; a failed handshake is logged by the listener.
    """

    def __init__(self, responder: _RoleResponder, factory: ListenerFactory) -> None:
        self._responder = responder
        self._listener = factory
        self._clock = factory.clock
        settings = factory.settings
        self._reader = BoxReader(settings.max_box_bytes)
        self._idle_timeout = settings.idle_timeout
        self._idle_call: Optional[IDelayedCall] = None
        self._last_read = 0.0
        self._peer = "?"
        # Whole boxes read but not handled yet (the turn's budget ran out or
        # the peer stopped reading): the buffer and where they start.
        self._backlog: Optional[Tuple[bytes, int]] = None
        # Reads that came while the backlog waited (from a TLS layer).
        self._later: List[bytes] = []
        self._next_turn: Optional[IDelayedCall] = None
        # Work past the last turn's budget, paid out of the next turns.
        self._debt = 0
        # The transport asked us to stop: its buffer of unsent answers is full.
        self._blocked = False
        self._reading = True
        self._started = False
        self._tls = False
        self._framing_error: Optional[FramingError] = None
        #: The commands answered on the fast path, by name: each handler
        #: returns the encoded answer, or C{None} for the generic path.
        self._fast: Dict[bytes, Callable[[Box], Optional[bytes]]] = {}

    # -- the connection ----------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        no_delay(transport)
        cast(IConsumer, transport).registerProducer(self, True)
        self._peer = describe(transport.getPeer())
        self._last_read = self._clock.seconds()
        if self._idle_timeout > 0:
            self._idle_call = self._clock.callLater(self._idle_timeout, self._check_idle)
        self._tls = ISSLTransport.providedBy(transport)
        if not self._tls:
            self._start()

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done (L{IHandshakeListener}): AMP starts.
        """
        if self.transport is not None and not self._started:
            self._start()

    def _start(self) -> None:
        self._started = True
        self._responder.startReceivingBoxes(self)

    def connectionLost(self, reason: Failure = _CONNECTION_LOST) -> None:
        for call in (self._idle_call, self._next_turn):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._next_turn = None
        self._reader.clear()
        self._backlog = None
        self._later = []
        if self._started:
            if isinstance(self._framing_error, KeyTooLong):
                reason = Failure(amp.TooLong(True, False, None, None))
            self._responder.stopReceivingBoxes(reason)
        elif self._tls:
            self._listener.warnings.warn(
                "tls handshake failed", peer=self._peer, reason=shown(reason.getErrorMessage())
            )
        self._listener.connection_closed(self)
        self.transport = None

    # -- room on the listener (ListenerConnection) ---------------------------

    def evictable(self) -> bool:
        """
        A connection may go to make room if its AMP side has not started
        (its TLS handshake is not done) or it holds no worker.
        """
        return not self._started or not self._responder.holds_workers()

    def last_active(self) -> float:
        """
        When the connection last received a byte or a call of it ended.
        """
        return max(self._last_read, self._responder.last_active)

    def evict(self) -> None:
        """
        Close the connection at once, to make room for another.
        """
        if self.transport is not None:
            cast(ITCPTransport, self.transport).abortConnection()

    def sendBox(self, box: amp.AmpBox) -> None:
        """
        Send a box of the generic path (L{amp.IBoxSender}).
        """
        if self.transport is None:
            raise ConnectionLost()
        self.transport.write(box.serialize())

    def unhandledError(self, failure: Failure) -> None:
        """
        An error nothing handled: log it and drop the connection, as
        L{amp.BinaryBoxProtocol} does (L{amp.IBoxSender}).
        """
        _twisted_log.failure(
            "unhandled error on a {role} connection", failure, role=self._responder.role
        )
        if self.transport is not None:
            self.transport.loseConnection()

    # -- flow control (IPushProducer, for the transport) ---------------------

    def pauseProducing(self) -> None:
        """
        The transport's buffer of unsent answers is full: read no more.
        """
        self._blocked = True
        self._stop_reading()

    def resumeProducing(self) -> None:
        """
        The transport's buffer drained: go on with what was read, then read.
        """
        self._blocked = False
        if self._backlog is not None or self._later:
            self._continue_next_turn()
        else:
            self._start_reading()

    def stopProducing(self) -> None:
        """
        The connection is going away; L{connectionLost} follows.
        """

    def _stop_reading(self) -> None:
        transport = self.transport
        if self._reading and transport is not None and not _closing(transport):
            self._reading = False
            cast(IPushProducer, transport).pauseProducing()

    def _start_reading(self) -> None:
        transport = self.transport
        if not self._reading and transport is not None and not _closing(transport):
            self._reading = True
            cast(IPushProducer, transport).resumeProducing()

    def _continue_next_turn(self) -> None:
        if self._next_turn is None:
            self._next_turn = self._clock.callLater(0, self._continue)

    def _continue(self) -> None:
        """
        A new turn: handle the backlog, then the reads that came meanwhile,
        and read again once all is done.
        """
        self._next_turn = None
        if self.transport is None or self._blocked:
            return
        if self._debt >= TURN_BUDGET:
            # The last turn's work was worth more than one: sit this one out.
            self._debt -= TURN_BUDGET
            self._continue_next_turn()
            return
        backlog, self._backlog = self._backlog, None
        if backlog is not None:
            self._handle(backlog[0], backlog[1], None, 0)
        while self._later and self._backlog is None and not self._blocked:
            if self.transport is None:
                return
            self._receive(self._later.pop(0))
        if self._backlog is None and not self._blocked and not self._later:
            self._start_reading()

    def _check_idle(self) -> None:
        self._idle_call = None
        if self.transport is None:
            return
        idle = self._clock.seconds() - self.last_active()
        if idle >= self._idle_timeout and not self._responder.busy():
            _log.debug(
                "idle connection closed",
                role=self._responder.role,
                peer=self._peer,
                idle=round(idle, 3),
            )
            self.transport.loseConnection()
            return
        wait = self._idle_timeout if idle >= self._idle_timeout else self._idle_timeout - idle
        self._idle_call = self._clock.callLater(wait, self._check_idle)

    # -- reading -------------------------------------------------------------

    #: Whether L{_shortcut} answers some boxes.
    has_shortcut: ClassVar[bool] = False

    def _shortcut(self, buffer: bytes, start: int, end: int, out: List[bytes]) -> int:
        """
        Answer the box at C{start} without parsing it into a dict, if it has a
        shape known in advance; return where the next box starts, or -1.
        """
        return -1

    def dataReceived(self, data: bytes) -> None:
        if self._framing_error is not None:
            return
        self._last_read = self._clock.seconds()
        if self._backlog is not None or self._later or self._next_turn is not None or self._blocked:
            self._later.append(data)
            return
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        """
        Handle one read, going on with the box an earlier read cut short.
        """
        reader = self._reader
        if reader.waiting:
            resumed = reader.add(data)
            if resumed is not None:
                buffer, box, origin = resumed
                self._handle(buffer, 0, box, origin)
        else:
            self._handle(data, 0, None, 0)

    def _handle(
        self, buffer: bytes, at: int, box: Optional[Dict[bytes, bytes]], origin: int
    ) -> None:
        """
        Handle the boxes of C{buffer} from C{at} (C{box}: the pairs of a box
        begun at C{origin} in an earlier read), within the turn's budget.
        """
        end = len(buffer)
        out: List[bytes] = []
        spent = self._debt
        self._debt = 0
        shortcut = self._shortcut if self.has_shortcut else None
        fast = self._fast.get
        limit = self._reader.limit
        try:
            while at < end or box is not None:
                if box is None:
                    if spent >= TURN_BUDGET:
                        self._backlog = (buffer, at)
                        self._debt = spent - TURN_BUDGET
                        self._stop_reading()
                        self._continue_next_turn()
                        break
                    if shortcut is not None:
                        after = shortcut(buffer, at, end, out)
                        if after >= 0:
                            at = after
                            spent += 1
                            continue
                    box = {}
                    origin = at
                after, needed = read_pairs(buffer, at, end, box, origin, limit)
                if needed:
                    self._reader.keep(buffer, after, needed, box, origin)
                    break
                size = after - origin
                if size > FREE_BOX_BYTES:
                    spent += (size - FREE_BOX_BYTES) // BYTES_PER_UNIT
                at = after
                current, box = box, None
                # Stock AMP reads a box holding _answer or _error as an answer,
                # whatever else it holds: those go to the generic path too.
                command = current.get(b"_command", b"")
                handler = fast(command)
                answer = (
                    handler(current)
                    if handler is not None
                    and b"_ask" in current
                    and b"_answer" not in current
                    and b"_error" not in current
                    else None
                )
                if answer is not None:
                    out.append(answer)
                    spent += 1
                    continue
                self._flush(out)
                spent += COMMAND_COSTS.get(command, GENERIC_COST)
                self._responder.ampBoxReceived(amp.AmpBox(current))
                if self.transport is None:
                    return
                if self._blocked:
                    if at < end:
                        self._backlog = (buffer, at)
                    break
        except FramingError as e:
            self._flush(out)
            self._drop(e)
            return
        self._flush(out)

    def _drop(self, error: FramingError) -> None:
        """
        The peer's bytes are not boxes we accept: say why, once, and close;
        what it sends from now on is not read.
        """
        self._framing_error = error
        self._reader.clear()
        self._listener.warnings.warn("connection dropped", peer=self._peer, reason=str(error))
        assert self.transport is not None
        self.transport.loseConnection()

    def _flush(self, out: List[bytes]) -> None:
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
            out.clear()


class _RoleProtocol(_FastBoxProtocol):
    """
    A listener's protocol over the queue: the commands answered on the fast
    path are in L{_fast}, by name; both roles answer C{Stats} there.
    """

    def __init__(
        self, responder: _RoleResponder, factory: ListenerFactory, queue: WorkerQueue
    ) -> None:
        super().__init__(responder, factory)
        self._queue = queue
        self._fast[Stats.commandName] = self._stats

    def _stats(self, box: Box) -> bytes:
        stats = self._queue.stats()
        tag = box[b"_ask"]
        return b"".join(
            (
                _ANSWER,
                pack_length(len(tag)),
                tag,
                encode_pair(b"dispatched", b"%d" % (stats.dispatched,)),
                encode_pair(b"free_slots", b"%d" % (stats.free_slots,)),
                _PROTOCOL,
                encode_pair(b"waiting", b"%d" % (stats.waiting,)),
                encode_pair(b"workers", b"%d" % (stats.workers,)),
                END,
            )
        )


class FrontendProtocol(_RoleProtocol):
    """
    One front-end connection: C{NextWorker} on the fast path when it finds a
    free slot or answers C{NO_WORKER_AVAILABLE} at once, and C{Stats};
    everything else through a L{FrontendResponder}.
    """

    def __init__(self, queue: WorkerQueue, factory: ListenerFactory) -> None:
        super().__init__(FrontendResponder(queue), factory, queue)
        self._take = queue.take
        self._fast[NextWorker.commandName] = self._next_worker_box

    has_shortcut = True

    def _shortcut(self, buffer: bytes, start: int, end: int, out: List[bytes]) -> int:
        # The NextWorker boxes without arguments that Twisted clients send
        # (keys sorted: _ask, _command) or that put _command first.
        if buffer.startswith(_ASK_KEY, start) and start + _ASK_TAG_AT <= end:
            tag_start = start + _ASK_TAG_AT
            tag_end = tag_start + ((buffer[tag_start - 2] << 8) | buffer[tag_start - 1])
            if not buffer.startswith(_COMMANDEND, tag_end):
                return -1
            after = tag_end + len(_COMMANDEND)
        elif buffer.startswith(_COMMAND_ASK_KEY, start) and start + _COMMAND_ASK_TAG_AT <= end:
            tag_start = start + _COMMAND_ASK_TAG_AT
            tag_end = tag_start + ((buffer[tag_start - 2] << 8) | buffer[tag_start - 1])
            if not buffer.startswith(END, tag_end):
                return -1
            after = tag_end + len(END)
        else:
            return -1
        out.append(self._next_worker(buffer[tag_start:tag_end], DEFAULT_POOL, 0.0))
        return after

    def _next_worker_box(self, box: Box) -> Optional[bytes]:
        pool = _pool_name(box.get(b"pool"))
        raw_timeout = box.get(b"timeout")
        timeout = 0.0 if raw_timeout is None else _timeout(raw_timeout)
        if pool is None or timeout is None:
            return None  # INVALID_ARGUMENT, from the generic path
        answer = self._next_worker(box[b"_ask"], pool, timeout)
        return answer or None

    def _next_worker(self, tag: bytes, pool: str, timeout: float) -> bytes:
        """
        The answer to a C{NextWorker}: a worker, C{NO_WORKER_AVAILABLE}, or
        C{b""} when the call must wait (the generic path waits).
        """
        worker = self._take(pool)
        if worker is None:
            return b"" if timeout else _no_worker(tag, pool)
        tail = worker.answer
        if tail is None:
            tail = worker.answer = encode_worker(worker.worker_id, worker.host, worker.port)
        return _ANSWER + pack_length(len(tag)) + tag + tail


class SchedulerProtocol(_RoleProtocol):
    """
    One scheduler connection: valid C{WorkerUpdate}s and C{Stats} on the fast
    path, everything else (and any update whose arguments need an error)
    through a L{SchedulerResponder}, which owns the connection's workers.
    """

    def __init__(self, queue: WorkerQueue, factory: ListenerFactory) -> None:
        super().__init__(SchedulerResponder(queue), factory, queue)
        self._update = queue.update
        self._fast[WorkerUpdate.commandName] = self._worker_update

    def _worker_update(self, box: Box) -> Optional[bytes]:
        try:
            worker_id = _worker_id.fromString(box[b"worker_id"])
            host = _host.fromString(box[b"host"])
            port = _port.fromString(box[b"port"])
            capacity = _capacity.fromString(box[b"capacity"])
            raw = box.get(b"pool")
            pool = None if raw is None else _update_pool.fromString(raw)
            raw = box.get(b"seq")
            seq = None if raw is None else _seq.fromString(raw)
            raw = box.get(b"ttl")
            ttl = None if raw is None else _ttl.fromString(raw)
        except (KeyError, ValueError):
            return None  # INVALID_ARGUMENT, from the generic path
        accepted = self._update(
            worker_id, host, port, capacity, pool, seq, ttl, owner=self._responder
        )
        tag = box[b"_ask"]
        return b"".join(
            (_ANSWER, pack_length(len(tag)), tag, _ACCEPTED if accepted else _NOT_ACCEPTED)
        )


def _closing(transport: object) -> bool:
    """
    Whether C{transport} is closing (it then reads no more by itself).
    """
    return bool(getattr(transport, "disconnecting", False))


def _no_worker(tag: bytes, pool: str) -> bytes:
    description = str(no_free_slot(pool)).encode("utf-8")
    return b"".join(
        (
            _ERROR,
            pack_length(len(tag)),
            tag,
            _NO_WORKER_CODE,
            _DESCRIPTION,
            pack_length(len(description)),
            description,
            END,
        )
    )


__all__ = ["FrontendProtocol", "SchedulerProtocol"]
