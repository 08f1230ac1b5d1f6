"""
A listener connection's protocol: AMP framing read incrementally, a bounded
share of work per reactor turn, back-pressure, an idle timeout, a TLS gate,
and room for fast paths (see L{_roles}) in front of the role's generic
receiver.

Twisted's generic AMP machinery (L{amp.BinaryBoxProtocol} parsing through
L{IntNStringReceiver}, L{amp.BoxDispatcher}, argument objects, a Deferred per
call) costs about 20 us of CPU per box.  Here each complete box whose
command has a fast handler is parsed, handled and answered in one loop, and
all the answers to one read go out in one write; every other box (other
commands, bad arguments, a call that must wait, a box without C{_ask} or
holding C{_answer}/C{_error}, empty boxes) goes to the role's receiver that
the generic protocol uses, so there is one implementation of everything but
the hot paths.  Framing (L{_framing}) follows L{amp.BinaryBoxProtocol}: a key
longer than 255 bytes drops the connection (L{amp.TooLong}), an empty key
ends a box, a repeated key keeps its last value; and a box longer than the
listener's limit drops it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ClassVar, Dict, List, Optional, Tuple, cast

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

from .._log import get_logger
from ._addresses import describe, no_delay
from ._framing import BoxReader, FramingError, KeyTooLong, read_pairs
from ._hooks import BAD_FRAMING, TLS_HANDSHAKE
from ._peerlog import shown
from ._receivers import _RoleReceiver

if TYPE_CHECKING:
    from ..server._listener import ListenerFactory

_log = get_logger("amp_dispatch.protocol")
_twisted_log = Logger()

Box = Dict[bytes, bytes]

_CONNECTION_LOST = Failure(ConnectionLost())


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
class ListenerProtocol(Protocol):
    """
    AMP framing with a fast path: each complete box whose command has a
    handler in L{_fast} is answered by it (the encoded answer, or C{None} to
    leave it to the generic path); every other box goes to the role's
    generic receiver.  Answers to one read go out in one write, in order
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

    def __init__(self, receiver: _RoleReceiver, factory: ListenerFactory) -> None:
        self._receiver = receiver
        self._listener = factory
        self._clock = factory.clock
        settings = factory.settings
        self._reader = BoxReader(settings.max_box_bytes)
        self._idle_timeout = settings.idle_timeout
        self._idle_call: Optional[IDelayedCall] = None
        self._last_read = 0.0
        self._connection = receiver.connection
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
        self._connection.peer = describe(transport.getPeer())
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
        self._receiver.startReceivingBoxes(self)

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
            self._receiver.stopReceivingBoxes(reason)
        elif self._tls:
            self._receiver.rejected(TLS_HANDSHAKE)
            self._listener.warnings.warn(
                "tls handshake failed",
                peer=self._connection.peer,
                reason=shown(reason.getErrorMessage()),
            )
        self._listener.connection_closed(self)
        self.transport = None

    # -- room on the listener (ListenerConnection) ---------------------------

    def evictable(self) -> bool:
        """
        A connection may go to make room if its AMP side has not started
        (its TLS handshake is not done) or it holds no worker.
        """
        return not self._started or not self._receiver.holds_workers()

    def last_active(self) -> float:
        """
        When the connection last received a byte or a call of it ended.
        """
        return max(self._last_read, self._receiver.last_active)

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
            "unhandled error on a {role} connection", failure, role=self._receiver.role
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
        if idle >= self._idle_timeout and not self._receiver.busy():
            _log.debug(
                "idle connection closed",
                role=self._receiver.role,
                peer=self._connection.peer,
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
                self._receiver.ampBoxReceived(amp.AmpBox(current))
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
        self._receiver.rejected(BAD_FRAMING)
        self._listener.warnings.warn(
            "connection dropped", peer=self._connection.peer, reason=str(error)
        )
        assert self.transport is not None
        self.transport.loseConnection()

    def _flush(self, out: List[bytes]) -> None:
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
            out.clear()


def _closing(transport: object) -> bool:
    """
    Whether C{transport} is closing (it then reads no more by itself).
    """
    return bool(getattr(transport, "disconnecting", False))


__all__ = ["ListenerProtocol"]
