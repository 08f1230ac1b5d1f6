"""
The listeners' protocols, with fast paths for C{NextWorker} and C{WorkerUpdate}.

Twisted's generic AMP machinery (L{amp.BinaryBoxProtocol} parsing through
L{IntNStringReceiver}, L{amp.BoxDispatcher}, argument objects, a Deferred per
call) costs about 20 us of CPU per box.  Here a C{NextWorker} box that asks
for an answer and finds a free slot (or answers C{NO_WORKER_AVAILABLE} at
once), and a C{WorkerUpdate} whose arguments are valid, are parsed, handled
and answered in one loop, and all the answers to one read go out in one
write.  The bytes on the wire are those the generic path sends: keys sorted,
as L{amp.AmpBox.serialize} writes them.

Every other box (other commands, bad arguments, a call that must wait, a box
without C{_ask} or holding C{_answer}/C{_error}, empty boxes) goes to the
role's responder that the generic protocol uses, so there is one
implementation of everything but the hot paths.  Framing (L{_framing}) follows
L{amp.BinaryBoxProtocol}: a key longer than 255 bytes drops the connection
(L{amp.TooLong}), an empty key ends a box, a repeated key keeps its last value.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from amp_dispatch_commands import (
    DEFAULT_POOL,
    NO_WORKER_AVAILABLE,
    BoundedInteger,
    HostName,
    Identifier,
    Seconds,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from ._addresses import no_delay
from ._framing import END, KeyTooLong, pack_length, read_box
from ._queue import WorkerQueue, _Worker, no_free_slot
from ._responders import FrontendResponder, SchedulerResponder, _RoleResponder

_twisted_log = Logger()


_ANSWER = b"\x00\x07_answer"
_ERROR = b"\x00\x06_error"
_NO_WORKER_CODE = (
    b"\x00\x0b_error_code" + pack_length(len(NO_WORKER_AVAILABLE)) + NO_WORKER_AVAILABLE
)
_DESCRIPTION = b"\x00\x12_error_description"

_NEXT_WORKER = b"NextWorker"
_ASK_KEY = b"\x00\x04_ask"
_COMMANDEND = b"\x00\x08_command\x00\x0aNextWorker\x00\x00"
_COMMAND_ASK_KEY = b"\x00\x08_command\x00\x0aNextWorker\x00\x04_ask"
# Where the tag starts, after the key and the tag's length.
_ASK_TAG_AT = len(_ASK_KEY) + 2
_COMMAND_ASK_TAG_AT = len(_COMMAND_ASK_KEY) + 2
_CONNECTION_LOST = Failure(ConnectionLost())

_WORKER_UPDATE = b"WorkerUpdate"
_ACCEPTED = b"\x00\x08accepted\x00\x04True\x00\x00"
_NOT_ACCEPTED = b"\x00\x08accepted\x00\x05False\x00\x00"

# Pool names already checked, by their bytes on the wire (bounded: any client
# may send any name).
_pool_names: Dict[bytes, str] = {}
_POOL_NAMES_KEPT = 4096
_identifier = Identifier()
_host = HostName()
_port = BoundedInteger(1, 65535)
_capacity = BoundedInteger(0)
_seconds = Seconds()


def _pool_name(raw: Optional[bytes]) -> Optional[str]:
    """
    The pool a C{NextWorker} names, or C{None} if the name is not valid.
    """
    if raw is None:
        return DEFAULT_POOL
    name = _pool_names.get(raw)
    if name is None:
        try:
            name = _identifier.fromString(raw)
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
        return _seconds.fromString(raw)
    except ValueError:
        return None


def encode_answer_tail(worker: _Worker) -> bytes:
    """
    The keys and values of a C{NextWorker} answer for C{worker}, sorted, and
    the end of the box: everything after the C{_answer} tag.
    """
    host = worker.host.encode("utf-8")
    port = b"%d" % (worker.port,)
    worker_id = worker.worker_id.encode("utf-8")
    return b"".join(
        (
            b"\x00\x04host",
            pack_length(len(host)),
            host,
            b"\x00\x04port",
            pack_length(len(port)),
            port,
            b"\x00\x09worker_id",
            pack_length(len(worker_id)),
            worker_id,
            END,
        )
    )


@implementer(amp.IBoxSender)
class _FastBoxProtocol(Protocol):
    """
    AMP framing with a fast path: each complete box goes to L{_answer}, which
    returns the encoded answer of a box it handles itself; every other box
    goes to the role's generic responder.  Answers to one read go out in one
    write, in order with the generic path's.
    """

    def __init__(self, responder: _RoleResponder) -> None:
        self._responder = responder
        self._buffer = b""
        self._key_too_long = False

    def connectionMade(self) -> None:
        no_delay(self.transport)
        self._responder.startReceivingBoxes(self)

    def connectionLost(self, reason: Failure = _CONNECTION_LOST) -> None:
        if self._key_too_long:
            reason = Failure(amp.TooLong(True, False, None, None))
        self._responder.stopReceivingBoxes(reason)
        self.transport = None

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

    def _shortcut(self, buffer: bytes, start: int, end: int, out: List[bytes]) -> int:
        """
        Answer the box at C{start} without parsing it into a dict, if it has a
        shape known in advance; return where the next box starts, or -1.
        """
        return -1

    def _answer(self, box: Dict[bytes, bytes]) -> Optional[bytes]:
        """
        The encoded answer to C{box}, or C{None} for the generic path.
        """
        return None

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        end = len(buffer)
        start = 0
        out: List[bytes] = []
        shortcut = self._shortcut
        answer_to = self._answer
        while True:
            after = shortcut(buffer, start, end, out)
            if after >= 0:
                start = after
                continue
            try:
                box, after = read_box(buffer, start, end)
            except KeyTooLong:
                self._key_too_long = True
                self._flush(out)
                self._buffer = b""
                assert self.transport is not None
                self.transport.loseConnection()
                return
            if box is None:
                break
            start = after
            # Stock AMP reads a box holding _answer or _error as an answer,
            # whatever else it holds: those go to the generic path too.
            answer = (
                answer_to(box)
                if b"_ask" in box and b"_answer" not in box and b"_error" not in box
                else None
            )
            if answer is not None:
                out.append(answer)
                continue
            self._flush(out)
            self._responder.ampBoxReceived(amp.AmpBox(box))
        self._buffer = buffer[start:]
        self._flush(out)

    def _flush(self, out: List[bytes]) -> None:
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
            out.clear()


class FrontendProtocol(_FastBoxProtocol):
    """
    One front-end connection: C{NextWorker} on the fast path when it finds a
    free slot or answers C{NO_WORKER_AVAILABLE} at once, everything else
    through a L{FrontendResponder}.
    """

    def __init__(self, queue: WorkerQueue) -> None:
        super().__init__(FrontendResponder(queue))
        self._take = queue.take

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

    def _answer(self, box: Dict[bytes, bytes]) -> Optional[bytes]:
        if box.get(b"_command") != _NEXT_WORKER:
            return None
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
            tail = worker.answer = encode_answer_tail(worker)
        return _ANSWER + pack_length(len(tag)) + tag + tail


class SchedulerProtocol(_FastBoxProtocol):
    """
    One scheduler connection: valid C{WorkerUpdate}s on the fast path,
    everything else (and any update whose arguments need an error) through
    a L{SchedulerResponder}, which owns the connection's workers.
    """

    def __init__(self, queue: WorkerQueue) -> None:
        super().__init__(SchedulerResponder(queue))
        self._update = queue.update

    def _answer(self, box: Dict[bytes, bytes]) -> Optional[bytes]:
        if box.get(b"_command") != _WORKER_UPDATE:
            return None
        try:
            worker_id = _identifier.fromString(box[b"worker_id"])
            host = _host.fromString(box[b"host"])
            port = _port.fromString(box[b"port"])
            capacity = _capacity.fromString(box[b"capacity"])
            raw = box.get(b"pool")
            pool = None if raw is None else _identifier.fromString(raw)
            raw = box.get(b"seq")
            seq = None if raw is None else int(raw)
            raw = box.get(b"ttl")
            ttl = None if raw is None else _seconds.fromString(raw)
        except (KeyError, ValueError):
            return None  # INVALID_ARGUMENT, from the generic path
        accepted = self._update(
            worker_id, host, port, capacity, pool, seq, ttl, owner=self._responder
        )
        tag = box[b"_ask"]
        return b"".join(
            (_ANSWER, pack_length(len(tag)), tag, _ACCEPTED if accepted else _NOT_ACCEPTED)
        )


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


__all__ = ["FrontendProtocol", "SchedulerProtocol", "encode_answer_tail"]
