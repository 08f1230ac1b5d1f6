"""
The front-end listener's protocol, with a fast path for C{NextWorker}.

Twisted's generic AMP machinery (L{amp.BinaryBoxProtocol} parsing through
L{IntNStringReceiver}, L{amp.BoxDispatcher}, argument objects, a Deferred per
call) costs about 25 us of CPU per call, most of it per box.  Here a C{NextWorker}
box that asks for an answer and finds a free slot is parsed, answered and
encoded in one tight loop, and all the answers to one read go out in one write.
The bytes on the wire are those the generic path sends: keys sorted, as
L{amp.AmpBox.serialize} writes them.

Every other box (other commands, bad arguments, a call that must wait, a box
without C{_ask}, answers, empty boxes) goes to the same L{FrontendResponder}
the generic protocol uses, so there is one implementation of everything but
the hot path.  Framing follows L{amp.BinaryBoxProtocol}: a key longer than 255
bytes drops the connection (L{amp.TooLong}), an empty key ends a box, a repeated
key keeps its last value.
"""

from __future__ import annotations

from struct import Struct
from typing import Dict, List, Optional

from amp_dispatch_commands import DEFAULT_POOL, NO_WORKER_AVAILABLE, Identifier, Seconds
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from ._queue import WorkerQueue, _Worker, no_free_slot
from ._responders import FrontendResponder

_twisted_log = Logger()

_pack_length = Struct(">H").pack
_MAX_KEY_LENGTH = 255

_ANSWER = b"\x00\x07_answer"
_ERROR = b"\x00\x06_error"
_NO_WORKER_CODE = (
    b"\x00\x0b_error_code" + _pack_length(len(NO_WORKER_AVAILABLE)) + NO_WORKER_AVAILABLE
)
_DESCRIPTION = b"\x00\x12_error_description"
_END = b"\x00\x00"

_NEXT_WORKER = b"NextWorker"
_ASK_KEY = b"\x00\x04_ask"
_COMMAND_END = b"\x00\x08_command\x00\x0aNextWorker\x00\x00"
_COMMAND_ASK_KEY = b"\x00\x08_command\x00\x0aNextWorker\x00\x04_ask"
# Where the tag starts, after the key and the tag's length.
_ASK_TAG_AT = len(_ASK_KEY) + 2
_COMMAND_ASK_TAG_AT = len(_COMMAND_ASK_KEY) + 2
_CONNECTION_LOST = Failure(ConnectionLost())

# Pool names already checked, by their bytes on the wire (bounded: any client
# may send any name).
_pool_names: Dict[bytes, str] = {}
_POOL_NAMES_KEPT = 4096
_identifier = Identifier()
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
            _pack_length(len(host)),
            host,
            b"\x00\x04port",
            _pack_length(len(port)),
            port,
            b"\x00\x09worker_id",
            _pack_length(len(worker_id)),
            worker_id,
            _END,
        )
    )


@implementer(amp.IBoxSender)
class FrontendProtocol(Protocol):
    """
    One front-end connection: C{NextWorker} on the fast path, everything else
    through a L{FrontendResponder}.
    """

    def __init__(self, queue: WorkerQueue) -> None:
        self._queue = queue
        self._responder = FrontendResponder(queue)
        self._buffer = b""
        self._key_too_long = False

    def connectionMade(self) -> None:
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
        _twisted_log.failure("unhandled error on a front-end connection", failure)
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        end = len(buffer)
        start = 0
        out: List[bytes] = []
        take = self._queue.take
        tag: Optional[bytes]
        while True:
            # The NextWorker boxes without arguments that Twisted clients send
            # (keys sorted: _ask, _command) or that put _command first, matched
            # without building a dict.
            tag_end = -1
            if buffer.startswith(_ASK_KEY, start) and start + _ASK_TAG_AT <= end:
                tag_start = start + _ASK_TAG_AT
                tag_end = tag_start + ((buffer[tag_start - 2] << 8) | buffer[tag_start - 1])
                box_end = tag_end + len(_COMMAND_END)
                if not buffer.startswith(_COMMAND_END, tag_end):
                    tag_end = -1
            elif buffer.startswith(_COMMAND_ASK_KEY, start) and start + _COMMAND_ASK_TAG_AT <= end:
                tag_start = start + _COMMAND_ASK_TAG_AT
                tag_end = tag_start + ((buffer[tag_start - 2] << 8) | buffer[tag_start - 1])
                box_end = tag_end + 2
                if not buffer.startswith(_END, tag_end):
                    tag_end = -1
            if tag_end >= 0:
                tag = buffer[tag_start:tag_end]
                start = box_end
                worker = take(DEFAULT_POOL)
                if worker is None:
                    out.append(_no_worker(tag, DEFAULT_POOL))
                    continue
                tail = worker.answer
                if tail is None:
                    tail = worker.answer = encode_answer_tail(worker)
                out.append(_ANSWER + _pack_length(len(tag)) + tag + tail)
                continue
            # Any other box: [2-byte key length, key, 2-byte value length,
            # value]..., then an empty key.
            box: Dict[bytes, bytes] = {}
            at = start
            complete = False
            while at + 2 <= end:
                key_length = (buffer[at] << 8) | buffer[at + 1]
                if key_length == 0:
                    at += 2
                    complete = True
                    break
                if key_length > _MAX_KEY_LENGTH:
                    self._key_too_long = True
                    self._flush(out)
                    self._buffer = b""
                    assert self.transport is not None
                    self.transport.loseConnection()
                    return
                key_end = at + 2 + key_length
                if key_end + 2 > end:
                    break
                value_end = key_end + 2 + ((buffer[key_end] << 8) | buffer[key_end + 1])
                if value_end > end:
                    break
                box[buffer[at + 2 : key_end]] = buffer[key_end + 2 : value_end]
                at = value_end
            if not complete:
                break
            start = at
            tag = box.get(b"_ask")
            if tag is not None and box.get(b"_command") == _NEXT_WORKER:
                pool = _pool_name(box.get(b"pool"))
                raw_timeout = box.get(b"timeout")
                timeout = 0.0 if raw_timeout is None else _timeout(raw_timeout)
                if pool is not None and timeout is not None:
                    worker = take(pool)
                    if worker is not None:
                        tail = worker.answer
                        if tail is None:
                            tail = worker.answer = encode_answer_tail(worker)
                        out.append(_ANSWER + _pack_length(len(tag)) + tag + tail)
                        continue
                    if not timeout:
                        out.append(_no_worker(tag, pool))
                        continue
            # Anything else: the generic path, after what is already answered.
            self._flush(out)
            self._responder.ampBoxReceived(amp.AmpBox(box))
        self._buffer = buffer[start:]
        self._flush(out)

    def _flush(self, out: List[bytes]) -> None:
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
            out.clear()


def _no_worker(tag: bytes, pool: str) -> bytes:
    description = str(no_free_slot(pool)).encode("utf-8")
    return b"".join(
        (
            _ERROR,
            _pack_length(len(tag)),
            tag,
            _NO_WORKER_CODE,
            _DESCRIPTION,
            _pack_length(len(description)),
            description,
            _END,
        )
    )


__all__ = ["FrontendProtocol", "encode_answer_tail"]
