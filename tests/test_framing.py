"""
The incremental, bounded box reader (L{_framing}): the boxes it reads, the
limits it enforces, and how often it looks at each byte, whatever the reads.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols import amp

from amp_dispatch.protocol._framing import (
    MAX_KEY_LENGTH,
    Box,
    BoxReader,
    BoxTooLarge,
    FramingError,
    KeyTooLong,
)
from tests._memory import encode, split

LIMIT = 1024


class Reading(BoxReader):
    """
    A L{BoxReader} that reads a stream read by read, keeping the boxes, the
    first framing error, and the bytes handed to the parser: each read
    parsed where it lies, or the joined bytes L{add} gives back.
    """

    def __init__(self, limit: int = LIMIT) -> None:
        super().__init__(limit)
        self.boxes: List[Box] = []
        self.parsed = 0
        self.error: Optional[FramingError] = None

    def add(self, data: bytes) -> Optional[Tuple[bytes, Box, int]]:
        resumed = super().add(data)
        if resumed is not None:
            self.parsed += len(resumed[0])
        return resumed

    def receive(self, data: bytes) -> None:
        if self.error is not None:
            return
        if not self.waiting:
            self.parsed += len(data)
        boxes, self.error = self.read(data)
        self.boxes += boxes


def read(stream: bytes, cuts: List[int], limit: int = LIMIT) -> Reading:
    reading = Reading(limit)
    for data in split(stream, cuts):
        reading.receive(data)
    return reading


PAIRS = st.lists(st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=40)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(PAIRS, max_size=6), st.data())
def test_same_boxes_whatever_the_reads(
    boxes: List[List[Tuple[bytes, bytes]]], data: st.DataObject
) -> None:
    """
    A stream read in any pieces gives the boxes Twisted's own parser reads
    from it whole.
    """
    stream = b"".join(encode(pairs) for pairs in boxes)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    reading = read(stream, cuts)
    assert reading.error is None
    assert reading.boxes == [dict(box) for box in amp.parseString(stream)]
    assert not reading.waiting or reading.kept == 0


def test_one_byte_at_a_time() -> None:
    """
    A box sent one byte per read is read whole, once.
    """
    stream = encode([(b"_ask", b"1"), (b"_command", b"Stats")]) * 3
    reading = read(stream, list(range(len(stream))))
    assert reading.boxes == [{b"_ask": b"1", b"_command": b"Stats"}] * 3


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_bytes_examined_bounded(size: int) -> None:
    """
    However small the reads, the bytes handed to the parser are at most a
    few times the bytes received: a box dribbled in costs no re-parse of
    what came before (stock amp re-joins its whole buffer on every read).
    """
    pair = encode([(b"k", b"v")])[:-2]
    value = encode([(b"big", b"x" * 60_000)])[:-2]
    stream = pair * 20_000 + value + b"\x00\x00"
    reading = read(stream, list(range(0, len(stream), size)), limit=len(stream))
    assert reading.error is None
    assert len(reading.boxes) == 1
    assert reading.parsed <= 4 * len(stream)


def test_kept_bytes_only_the_unfinished_pair() -> None:
    """
    What a connection keeps of an unfinished box is its pairs (parsed) and
    the bytes of the one pair not whole yet, not the box's bytes so far.
    """
    reading = Reading(limit=1 << 20)
    reading.receive(encode([(b"k%d" % i, b"v" * 100) for i in range(100)])[:-2] + b"\x00\x03ke")
    assert reading.kept == 4


def test_box_at_the_limit() -> None:
    """
    A box of exactly the limit's bytes, end marker included, is read.
    """
    stream = encode([(b"k", b"x" * (LIMIT - 7))])
    assert len(stream) == LIMIT
    assert read(stream, []).boxes == [{b"k": b"x" * (LIMIT - 7)}]


def test_box_over_the_limit() -> None:
    """
    One byte more is refused.
    """
    stream = encode([(b"k", b"x" * (LIMIT - 6))])
    assert isinstance(read(stream, []).error, BoxTooLarge)


def test_over_limit_refused_on_its_length() -> None:
    """
    A value whose length passes the limit is refused as soon as its two
    length bytes are in, before the value is.
    """
    reading = read(b"\x00\x01k" + (60_000).to_bytes(2, "big"), [])
    assert isinstance(reading.error, BoxTooLarge)
    assert str(reading.error) == f"box over {LIMIT} bytes"


def test_endless_small_pairs_refused() -> None:
    """
    A box of small pairs that never ends is refused once it passes the
    limit, whatever the reads.
    """
    stream = encode([(b"k", b"v")])[:-2] * 1000
    reading = read(stream, list(range(0, len(stream), 3)))
    assert isinstance(reading.error, BoxTooLarge)
    assert reading.boxes == []


def test_key_too_long() -> None:
    """
    A key length over 255 is refused as soon as its two bytes are in.
    """
    reading = read((MAX_KEY_LENGTH + 1).to_bytes(2, "big"), [])
    assert isinstance(reading.error, KeyTooLong)
    assert str(reading.error) == "key of 256 bytes (at most 255)"


def test_key_of255() -> None:
    """
    A key of 255 bytes is a key.
    """
    key = b"k" * MAX_KEY_LENGTH
    assert read(encode([(key, b"v")]), [100]).boxes == [{key: b"v"}]


def test_repeated_key_keeps_last() -> None:
    """
    A repeated key keeps its last value, as stock AMP does.
    """
    stream = encode([(b"k", b"1"), (b"k", b"2")])
    assert read(stream, [9]).boxes == [{b"k": b"2"}]


def test_reader_clear() -> None:
    """
    C{clear} forgets what was kept.
    """
    reader = BoxReader(LIMIT)
    reader.keep(b"\x00\x05ab", 0, 9, {b"a": b"b"}, -5)
    reader.clear()
    assert (reader.waiting, reader.kept) == (False, 0)


def test_reader_add_waits_for_needed() -> None:
    """
    C{add} returns nothing until the unfinished pair's bytes are in, then
    all that came, the unfinished box and where it started in them.
    """
    reader = BoxReader(LIMIT)
    reader.keep(b"xx\x00\x03", 2, 9, {b"a": b"b"}, -7)
    assert reader.add(b"ke") is None
    assert reader.add(b"y\x00\x01vNEXT") == (b"\x00\x03key\x00\x01vNEXT", {b"a": b"b"}, -9)
    assert not reader.waiting


def test_read_keeps_what_follows() -> None:
    """
    C{read} returns the boxes a read ends, and the ones before a framing
    error with the error.
    """
    reader = BoxReader(LIMIT)
    whole = encode([(b"k", b"v")])
    assert reader.read(whole + whole[:3]) == ([{b"k": b"v"}], None)
    assert reader.read(whole[3:]) == ([{b"k": b"v"}], None)
    boxes, error = reader.read(whole + b"\x01\x00")
    assert boxes == [{b"k": b"v"}]
    assert isinstance(error, KeyTooLong)
    assert not reader.waiting
