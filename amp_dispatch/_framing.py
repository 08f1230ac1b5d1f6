"""
AMP box framing without Twisted's generic parser, for the listeners and the
clients: incremental, and bounded in size.

A box is a run of [2-byte big-endian key length, key, 2-byte value length,
value] ended by an empty key.  As in L{amp.BinaryBoxProtocol}, a key longer
than 255 bytes is an error that ends the connection, and a repeated key keeps
its last value.  Beyond stock AMP, a box longer than a set limit is an error
too (L{BoxTooLarge}), raised as soon as a length read says the box will pass
it, so a peer cannot make us keep an endless box.

B{Bounded work.}  A read that holds whole boxes is parsed where it lies.
A box cut by the end of a read is parsed up to its last whole pair; the pairs
read are kept (L{BoxReader.box}) and only the bytes of the unfinished pair
are kept, with how many bytes that pair needs before it can be read further.
Later reads are only collected until that many have come, then joined and
parsed on.  So each byte is copied and examined a bounded number of times
(at most three times per pair: its key length, key and value length, and
value stages), whatever the sizes of the reads: a peer dribbling a box one
byte at a time costs one list append per byte.
"""

from __future__ import annotations

from struct import Struct
from typing import Dict, List, Optional, Tuple

MAX_KEY_LENGTH = 255
END = b"\x00\x00"

pack_length = Struct(">H").pack

Box = Dict[bytes, bytes]


class FramingError(Exception):
    """
    The peer's bytes are not AMP boxes we accept: the connection must end.
    """


class KeyTooLong(FramingError):
    """
    A key's length is over L{MAX_KEY_LENGTH}: the peer is not speaking AMP.
    """

    def __str__(self) -> str:
        return f"key of {self.args[0]} bytes (at most {MAX_KEY_LENGTH})"


class BoxTooLarge(FramingError):
    """
    A box would be longer than the connection's limit.
    """

    def __str__(self) -> str:
        return f"box over {self.args[0]} bytes"


def read_pairs(
    buffer: bytes, at: int, end: int, box: Box, origin: int, limit: int
) -> Tuple[int, int]:
    """
    Read the pairs of one box from C{buffer[at:end]} into C{box}.

    @param origin: where the box starts in C{buffer} (negative when its first
        bytes came in earlier reads).
    @param limit: the most bytes the box may take, end marker included.
    @return: C{(after, 0)} once the box ended, C{after} being where the next
        box starts; or C{(at, needed)} when the pair at C{at} is not whole:
        it needs C{needed} bytes from C{at} before it can be read further.
    @raise KeyTooLong: a key length over 255 (as soon as its 2 bytes are in).
    @raise BoxTooLarge: a value's length makes the box pass C{limit} (so a
        box is refused at most a key past the limit, before its value comes).
    """
    while True:
        if at + 2 > end:
            if at + 2 - origin > limit:
                raise BoxTooLarge(limit)
            return at, 2
        key_length = (buffer[at] << 8) | buffer[at + 1]
        if key_length == 0:
            if at + 2 - origin > limit:
                raise BoxTooLarge(limit)
            return at + 2, 0
        if key_length > MAX_KEY_LENGTH:
            raise KeyTooLong(key_length)
        key_end = at + 2 + key_length
        if key_end + 2 > end:
            return at, key_end + 2 - at
        value_end = key_end + 2 + ((buffer[key_end] << 8) | buffer[key_end + 1])
        # Every box needs its end marker after this pair: count it in.
        if value_end + 2 - origin > limit:
            raise BoxTooLarge(limit)
        if value_end > end:
            return at, value_end - at
        box[buffer[at + 2 : key_end]] = buffer[key_end + 2 : value_end]
        at = value_end


class BoxReader:
    """
    What a connection keeps of a box cut by the end of a read: its pairs read
    so far, and the bytes after them until enough have come to go on.

    A protocol parses each read with L{read_pairs}; when a box is not whole it
    calls L{keep}; on the next reads it calls L{add}, which returns the bytes
    to parse (the kept ones first) once there are enough, and L{resume} gives
    back the box and its origin to go on with.

    @ivar limit: the most bytes a box may take.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes kept: the protocol must call L{add} before parsing a read.
        self.waiting = False
        self._chunks: List[bytes] = []
        self._length = 0
        self._needed = 0
        self._box: Optional[Box] = None
        self._taken = 0

    def keep(self, buffer: bytes, at: int, needed: int, box: Optional[Box], origin: int) -> None:
        """
        Keep C{buffer[at:]} until C{needed} bytes are in; C{box} holds the
        pairs of an unfinished box that started at C{origin} (C{None}: C{at}
        is where a box starts, or the rest is whole boxes not parsed yet,
        with C{needed} 0).
        """
        rest = buffer[at:] if at else buffer
        self._chunks = [rest] if rest else []
        self._length = len(rest)
        self._needed = needed
        self._box = box
        self._taken = at - origin if box is not None else 0
        self.waiting = True

    def add(self, data: bytes) -> Optional[bytes]:
        """
        Take a read; return the bytes to parse now, from their start, or
        C{None} while fewer than the unfinished pair needs have come.
        """
        self._chunks.append(data)
        self._length += len(data)
        if self._length < self._needed:
            return None
        chunks = self._chunks
        buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._length = 0
        self.waiting = False
        return buffer

    def resume(self) -> Tuple[Optional[Box], int]:
        """
        The unfinished box to go on with and where it started relative to
        the bytes L{add} returned (C{None, 0} when none).
        """
        box, self._box = self._box, None
        return box, -self._taken

    def clear(self) -> None:
        """
        Forget what was kept (the connection is closing).
        """
        self._chunks = []
        self._length = 0
        self._box = None
        self._taken = 0
        self.waiting = False

    @property
    def kept(self) -> int:
        """
        The bytes kept now (the unfinished pair, or boxes not parsed yet).
        """
        return self._length


def encode_pair(key: bytes, value: bytes) -> bytes:
    """
    One key and its value, framed.
    """
    return pack_length(len(key)) + key + pack_length(len(value)) + value
