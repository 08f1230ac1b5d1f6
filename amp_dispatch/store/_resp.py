"""
RESP, the protocol of Redis and Valkey, for the store client: commands
encoded, and replies read by C{hiredis.Reader} where it is installed (the
parser Redis's own clients use) or by L{PythonReader}, the same interface in
pure Python (PyPy runs it faster than hiredis through cpyext).

Replies are RESP2: simple strings and bulk strings come as C{bytes}, integers
as C{int}, a nil as C{None}, arrays as lists, and an error reply as a
L{ReplyError} instance (returned, not raised, as C{hiredis} does).  A reader
refuses what no store we speak to sends: bulk strings over
L{MAX_BULK_BYTES}, arrays over L{MAX_ARRAY_ITEMS}, nesting deeper than
L{MAX_DEPTH}, a line over L{MAX_LINE_BYTES} (L{ProtocolError}).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

#: The longest bulk string a reply may hold (a store's answers are small;
#: a page of workers is well under a megabyte).
MAX_BULK_BYTES = 64 * 1024 * 1024
#: The most items an array may hold.
MAX_ARRAY_ITEMS = 1_000_000
#: The deepest arrays may nest.
MAX_DEPTH = 8
#: The longest simple line (a status, an error, a number).
MAX_LINE_BYTES = 64 * 1024

Value = Union[bytes, str, int, float]


class ReplyError(Exception):
    """
    An error reply of the store (C{-ERR ...}, C{-NOSCRIPT ...}): its text.
    """


class ProtocolError(Exception):
    """
    The store's bytes are not RESP we accept; the connection must close.
    """


def encode_command(*arguments: Value) -> bytes:
    """
    A command as RESP: an array of bulk strings (text in UTF-8, numbers in
    decimal).
    """
    parts = [b"*%d\r\n" % (len(arguments),)]
    for argument in arguments:
        if isinstance(argument, bytes):
            data = argument
        elif isinstance(argument, str):
            data = argument.encode("utf-8")
        elif isinstance(argument, bool):
            raise TypeError("a command argument may not be a bool")
        elif isinstance(argument, int):
            data = b"%d" % (argument,)
        else:
            data = repr(float(argument)).encode("ascii")
        parts += (b"$%d\r\n" % (len(data),), data, b"\r\n")
    return b"".join(parts)


#: Not a whole reply yet (as C{hiredis.Reader.gets} says it).
_INCOMPLETE: Any = False


class PythonReader:
    """
    Reads replies out of the bytes fed to it, in order (the interface of
    C{hiredis.Reader}: L{feed}, then L{gets} until it returns C{False}).

    An incomplete reply is parsed again from its start only once as many
    bytes came as the part that stopped it needs (a bulk string's length is
    known in advance, a line needs one more byte).
    """

    def __init__(self, replyError: Callable[[str], Exception] = ReplyError) -> None:
        self._reply_error = replyError
        self._buffer = b""
        self._at = 0
        # Bytes needed before parsing again is worth it.
        self._needed = 0

    def feed(self, data: bytes) -> None:
        """
        Take more bytes from the store.
        """
        if self._at:
            self._buffer = self._buffer[self._at :] + data
            self._needed -= self._at
            self._at = 0
        else:
            self._buffer += data

    def gets(self) -> Any:
        """
        The next whole reply, or C{False} when there is none yet.

        @raise ProtocolError: the bytes are not RESP we accept.
        """
        if len(self._buffer) < self._needed:
            return _INCOMPLETE
        parsed = self._parse(self._at, 0)
        if parsed is None:
            return _INCOMPLETE
        value, self._at = parsed
        self._needed = 0
        return value

    def _line(self, at: int) -> Optional[Tuple[bytes, int]]:
        end = self._buffer.find(b"\r\n", at, at + MAX_LINE_BYTES + 2)
        if end < 0:
            if len(self._buffer) - at > MAX_LINE_BYTES + 1:
                raise ProtocolError(f"a line longer than {MAX_LINE_BYTES} bytes")
            self._needed = len(self._buffer) + 1
            return None
        return self._buffer[at:end], end + 2

    def _parse(self, at: int, depth: int) -> Optional[Tuple[Any, int]]:
        if at >= len(self._buffer):
            self._needed = at + 1
            return None
        line = self._line(at + 1)
        if line is None:
            return None
        text, after = line
        kind = self._buffer[at : at + 1]
        if kind == b"+":
            return text, after
        if kind == b"-":
            return self._reply_error(text.decode("utf-8", "replace")), after
        if kind == b":":
            return _number(text), after
        if kind == b"$":
            length = _size(text, MAX_BULK_BYTES, "a bulk string of {} bytes")
            if length < 0:
                return None, after
            end = after + length
            if len(self._buffer) < end + 2:
                self._needed = end + 2
                return None
            if self._buffer[end : end + 2] != b"\r\n":
                raise ProtocolError("a bulk string not ended by CRLF")
            return self._buffer[after:end], end + 2
        if kind == b"*":
            count = _size(text, MAX_ARRAY_ITEMS, "an array of {} items")
            if count < 0:
                return None, after
            if depth >= MAX_DEPTH:
                raise ProtocolError(f"arrays nested deeper than {MAX_DEPTH}")
            items: List[Any] = []
            for _ in range(count):
                parsed = self._parse(after, depth + 1)
                if parsed is None:
                    return None
                item, after = parsed
                items.append(item)
            return items, after
        raise ProtocolError(f"an unknown reply type {kind!r}")


def _size(text: bytes, most: int, refused: str) -> int:
    """
    A bulk string's length or an array's count (negative: a nil), at most
    C{most}; C{refused} says what a larger one is.
    """
    size = _number(text)
    if size > most:
        raise ProtocolError(refused.format(size))
    return size


def _number(text: bytes) -> int:
    if len(text) > 20:
        raise ProtocolError("a number longer than 20 characters")
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"not a number: {text[:20]!r}") from None


def make_reader() -> Any:
    """
    A reader of replies: C{hiredis.Reader} if it is installed, else
    L{PythonReader}; either returns error replies as L{ReplyError}s and
    raises L{ProtocolError}.
    """
    try:
        import hiredis
    except ImportError:
        return PythonReader()
    return hiredis.Reader(protocolError=ProtocolError, replyError=ReplyError)


__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_BULK_BYTES",
    "MAX_DEPTH",
    "MAX_LINE_BYTES",
    "ProtocolError",
    "PythonReader",
    "ReplyError",
    "encode_command",
    "make_reader",
]
