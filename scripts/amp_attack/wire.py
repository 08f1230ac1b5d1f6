"""
Raw AMP boxes for the attack suite: encoding (the benchmark's L{amp_pair} and
L{amp_box}), a parser of whole boxes, and L{Caller}, a blocking connection
making one call at a time, for set-up and checks.

A box is a run of [2-byte big-endian key length, key, 2-byte value length,
value] ended by an empty key.  A call carries C{_command} and C{_ask}; its
answer C{_answer} (the same tag) and the result, or C{_error},
C{_error_code} and C{_error_description}.
"""

from __future__ import annotations

import itertools
import socket
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from amp_bench.wire import AmpAnswers, amp_box, amp_pair

__all__ = [
    "AmpAnswers",
    "Box",
    "BoxParser",
    "CallFailed",
    "Caller",
    "Value",
    "amp_box",
    "amp_pair",
    "call_box",
    "connect",
    "error_code",
]

Box = Dict[bytes, bytes]
Value = Union[str, bytes, int, float]
LOOPBACK = "127.0.0.1"


def encode_value(value: Value) -> bytes:
    """
    A value as AMP sends it: text in UTF-8, integers in decimal, floats as
    Python's C{repr}; bytes as they are.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, float):
        return repr(value).encode("ascii")
    return b"%d" % (value,)


def call_box(command: Union[str, bytes], tag: Optional[bytes], /, **arguments: Value) -> bytes:
    """
    A call of C{command} with C{arguments} (C{None} tag: no C{_ask}, no answer).
    """
    pairs: List[Tuple[bytes, bytes]] = [(b"_command", encode_value(command))]
    if tag is not None:
        pairs.append((b"_ask", tag))
    pairs += [(name.encode(), encode_value(value)) for name, value in arguments.items()]
    return amp_box(pairs)


def error_code(box: Box) -> Optional[bytes]:
    """
    The error code of an answer box, C{None} for a successful answer.
    """
    return box.get(b"_error_code") if b"_error" in box else None


class BoxParser:
    """
    Whole boxes out of a byte stream: C{feed} returns the boxes completed by
    C{data}, each as a dict (a repeated key keeps its last value).
    """

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> List[Box]:
        buf = self._buf + data if self._buf else data
        boxes: List[Box] = []
        at, end = 0, len(buf)
        box: Box = {}
        start = 0
        while at + 2 <= end:
            key_length = (buf[at] << 8) | buf[at + 1]
            if key_length == 0:
                boxes.append(box)
                box = {}
                at += 2
                start = at
                continue
            key_end = at + 2 + key_length
            if key_end + 2 > end:
                break
            value_end = key_end + 2 + ((buf[key_end] << 8) | buf[key_end + 1])
            if value_end > end:
                break
            box[buf[at + 2 : key_end]] = buf[key_end + 2 : value_end]
            at = value_end
        self._buf = buf[start:]
        return boxes


class CallFailed(Exception):
    """
    A call got no answer: the connection closed, or the time ran out.
    """


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """
    A blocking TCP connection to C{port} on loopback, with TCP_NODELAY.
    """
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Caller:
    """
    One connection that makes one call at a time and waits for its answer
    (answers to earlier calls that timed out are skipped).
    """

    _tags: Iterator[int] = itertools.count(1)

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.port = port
        self.sock = connect(port, timeout)
        self._parser = BoxParser()
        self._pending: List[Box] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.closed = True
            raise CallFailed(f"send failed: {e}") from None

    def next_box(self, timeout: float) -> Box:
        """
        The next box the server sends, within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallFailed(f"no answer within {timeout:g} s")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(262144)
            except socket.timeout:
                raise CallFailed(f"no answer within {timeout:g} s") from None
            except OSError as e:
                self.closed = True
                raise CallFailed(f"connection lost: {e}") from None
            if not data:
                self.closed = True
                raise CallFailed("connection closed by the server")
            self._pending += self._parser.feed(data)
        return self._pending.pop(0)

    def answer(self, tag: bytes, timeout: float) -> Box:
        """
        The answer to the call tagged C{tag}, within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            box = self.next_box(max(0.0, deadline - time.monotonic()))
            if box.get(b"_answer", box.get(b"_error")) == tag:
                return box

    def call(self, command: str, seconds: float = 5.0, /, **arguments: Value) -> Box:
        """
        Call C{command} and return its answer box (an error answer too)
        within C{seconds}.
        """
        tag = b"c%d" % (next(self._tags),)
        self.send(call_box(command, tag, **arguments))
        return self.answer(tag, seconds)

    def call_raw(self, box: bytes, tag: bytes, timeout: float = 5.0) -> Box:
        """
        Send the encoded call C{box} (tagged C{tag}) and return its answer.
        """
        self.send(box)
        return self.answer(tag, timeout)

    def pipeline(self, boxes: Sequence[bytes], timeout: float = 30.0) -> List[Box]:
        """
        Send calls (each with an C{_ask}) in one go and return their answers,
        in the order they came.
        """
        self.send(b"".join(boxes))
        return [self.next_box(timeout) for _ in boxes]

    def stats(self, timeout: float = 5.0) -> Dict[str, int]:
        """
        C{Stats}, as a dict of integers.
        """
        box = self.call("Stats", timeout)
        if b"_error" in box:
            raise CallFailed(f"Stats failed: {box!r}")
        return {key.decode(): int(value) for key, value in box.items() if not key.startswith(b"_")}

    def list_all(self, timeout: float = 10.0, limit: int = 500) -> List[Box]:
        """
        Every registered worker (C{ListWorkers}, page after page), as boxes.
        """
        rows: List[Box] = []
        after: Optional[bytes] = None
        while True:
            arguments: Dict[str, Value] = {"limit": limit}
            if after is not None:
                arguments["after"] = after
            box = self.call("ListWorkers", timeout, **arguments)
            if b"_error" in box:
                raise CallFailed(f"ListWorkers failed: {box.get(b'_error_code')!r}")
            rows += BoxParser().feed(box[b"workers"])
            after = box.get(b"next_after")
            if after is None:
                return rows
