"""
AMP box framing without Twisted's generic parser, for the fast paths of the
server and the clients.

A box is a run of [2-byte big-endian key length, key, 2-byte value length,
value] ended by an empty key.  As in L{amp.BinaryBoxProtocol}, a key longer
than 255 bytes is an error that ends the connection, and a repeated key keeps
its last value.
"""

from __future__ import annotations

from struct import Struct
from typing import Dict, Optional, Tuple

MAX_KEY_LENGTH = 255
END = b"\x00\x00"

pack_length = Struct(">H").pack

Box = Dict[bytes, bytes]


class KeyTooLong(Exception):
    """
    A key's length is over L{MAX_KEY_LENGTH}: the peer is not speaking AMP.
    """


def read_box(buffer: bytes, start: int, end: int) -> Tuple[Optional[Box], int]:
    """
    Read the box at C{buffer[start:end]}.

    @return: the box and where the next one starts, or C{None} and C{start}
        when the box is not complete yet.
    @raise KeyTooLong: a key length over 255 (as soon as its 2 bytes are in).
    """
    box: Box = {}
    at = start
    while at + 2 <= end:
        key_length = (buffer[at] << 8) | buffer[at + 1]
        if key_length == 0:
            return box, at + 2
        if key_length > MAX_KEY_LENGTH:
            raise KeyTooLong(key_length)
        key_end = at + 2 + key_length
        if key_end + 2 > end:
            break
        value_end = key_end + 2 + ((buffer[key_end] << 8) | buffer[key_end + 1])
        if value_end > end:
            break
        box[buffer[at + 2 : key_end]] = buffer[key_end + 2 : value_end]
        at = value_end
    return None, start


def encode_pair(key: bytes, value: bytes) -> bytes:
    """
    One key and its value, framed.
    """
    return pack_length(len(key)) + key + pack_length(len(value)) + value
