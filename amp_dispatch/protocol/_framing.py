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

    L{read} reads whole boxes off each read.  A protocol that parses reads
    itself (with L{read_pairs}) calls L{keep} when a box is not whole, and,
    while L{waiting}, passes each later read to L{add}, which gives back the
    bytes to go on with once there are enough.

    @ivar limit: the most bytes a box may take.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes kept: the protocol must call L{add} before parsing a read.
        self.waiting = False
        self._chunks: List[bytes] = []
        self._length = 0
        self._needed = 0
        self._box: Box = {}
        self._taken = 0

    def keep(self, buffer: bytes, at: int, needed: int, box: Box, origin: int) -> None:
        """
        Keep C{buffer[at:]} until C{needed} bytes are in; C{box} holds the
        pairs read so far of the box that started at C{origin}.
        """
        rest = buffer[at:] if at else buffer
        self._chunks = [rest] if rest else []
        self._length = len(rest)
        self._needed = needed
        self._box = box
        self._taken = at - origin
        self.waiting = True

    def add(self, data: bytes) -> Optional[Tuple[bytes, Box, int]]:
        """
        Take a read; once the unfinished pair has its bytes, return the bytes
        to parse from their start (the kept ones first), the unfinished box
        and where it started in them; C{None} until then.
        """
        self._chunks.append(data)
        self._length += len(data)
        if self._length < self._needed:
            return None
        chunks = self._chunks
        buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        box, taken = self._box, self._taken
        self.clear()
        return buffer, box, -taken

    def read(self, data: bytes) -> Tuple[List[Box], Optional[FramingError]]:
        """
        Read the boxes that C{data} ends, keeping what follows them; and the
        framing error that stopped the reading, if one did (what was kept is
        then forgotten: the connection must close).
        """
        box: Optional[Box] = None
        origin = 0
        if self.waiting:
            resumed = self.add(data)
            if resumed is None:
                return [], None
            data, box, origin = resumed
        boxes: List[Box] = []
        at, end, limit = 0, len(data), self.limit
        try:
            while at < end or box is not None:
                if box is None:
                    box = {}
                    origin = at
                after, needed = read_pairs(data, at, end, box, origin, limit)
                if needed:
                    self.keep(data, after, needed, box, origin)
                    break
                boxes.append(box)
                box = None
                at = after
        except FramingError as e:
            self.clear()
            return boxes, e
        return boxes, None

    def clear(self) -> None:
        """
        Forget what was kept.
        """
        self._chunks = []
        self._length = 0
        self._box = {}
        self._taken = 0
        self.waiting = False

    @property
    def kept(self) -> int:
        """
        The bytes kept now (of the unfinished pair).
        """
        return self._length


def encode_pair(key: bytes, value: bytes) -> bytes:
    """
    One key and its value, framed.
    """
    return pack_length(len(key)) + key + pack_length(len(value)) + value
