"""
RESP (L{amp_dispatch.store._resp}): commands encoded as the store reads
them, and the pure-Python reader reading what hiredis reads, however the
bytes are cut, within its bounds.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amp_dispatch.store import _resp
from amp_dispatch.store._resp import (
    ProtocolError,
    PythonReader,
    ReplyError,
    encode_command,
    make_reader,
)

LEAVES = st.one_of(
    st.binary(max_size=40).map(lambda b: ("bulk", b)),
    st.text(alphabet="abcXYZ09 ", max_size=20).map(lambda t: ("simple", t)),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: ("int", n)),
    st.just(("nil", None)),
    st.text(alphabet="ERR bad", min_size=1, max_size=20).map(lambda t: ("error", t)),
)
VALUES = st.recursive(
    LEAVES, lambda items: st.lists(items, max_size=5).map(lambda v: ("array", v)), max_leaves=20
)


def encode(value: Any) -> bytes:
    """
    A reply as a store writes it.
    """
    kind, content = value
    if kind == "bulk":
        return b"$%d\r\n%s\r\n" % (len(content), content)
    if kind == "simple":
        return b"+%s\r\n" % (content.encode(),)
    if kind == "int":
        return b":%d\r\n" % (content,)
    if kind == "nil":
        return b"$-1\r\n"
    if kind == "error":
        return b"-%s\r\n" % (content.encode(),)
    return b"*%d\r\n" % (len(content),) + b"".join(encode(item) for item in content)


def expected(value: Any) -> Any:
    """
    What a reader gives for a reply (errors by their text).
    """
    kind, content = value
    if kind == "simple":
        return content.encode()
    if kind == "error":
        return ("error", content)
    if kind == "array":
        return [expected(item) for item in content]
    return content


def comparable(reply: Any) -> Any:
    if isinstance(reply, ReplyError):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [comparable(item) for item in reply]
    return reply


def read_all(reader: Any, data: bytes, cuts: List[int]) -> List[Any]:
    replies = []
    points = [0, *sorted(set(cuts)), len(data)]
    for start, end in zip(points, points[1:]):
        reader.feed(data[start:end])
        reply = reader.gets()
        while reply is not False:
            replies.append(comparable(reply))
            reply = reader.gets()
    return replies


@given(st.lists(VALUES, min_size=1, max_size=5), st.data())
def test_python_reader_reads_every_cut(values: List[Any], data: st.DataObject) -> None:
    """
    The pure-Python reader reads every reply, in order, whatever the cuts
    between reads; as the default reader (hiredis where installed) does.
    """
    stream = b"".join(encode(value) for value in values)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    want = [expected(value) for value in values]
    assert read_all(PythonReader(), stream, cuts) == want
    assert read_all(make_reader(), stream, cuts) == want


def test_incomplete_is_false() -> None:
    """
    Until a reply is whole, C{gets} says C{False}.
    """
    reader = PythonReader()
    reader.feed(b"$5\r\nab")
    assert reader.gets() is False
    reader.feed(b"cde\r\n")
    assert reader.gets() == b"abcde"
    assert reader.gets() is False


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"?what\r\n", "unknown reply type"),
        (b"$3\r\nabcXY", "not ended by CRLF"),
        (b":12x\r\n", "not a number"),
        (b"$99999999999\r\n", "bulk string of"),
        (b"*99999999\r\n", "array of"),
        (b"*1\r\n" * 9 + b":1\r\n", "nested deeper"),
    ],
)
def test_refused(data: bytes, why: str) -> None:
    """
    Bytes that are not RESP, or pass the reader's bounds, are refused.
    """
    reader = PythonReader()
    reader.feed(data)
    with pytest.raises(ProtocolError, match=why):
        reader.gets()


def test_long_line_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A line longer than the bound is refused once the bound is passed,
    without waiting for its end.
    """
    monkeypatch.setattr(_resp, "MAX_LINE_BYTES", 16)
    reader = PythonReader()
    reader.feed(b"+" + b"x" * 40)
    with pytest.raises(ProtocolError, match="longer than 16"):
        reader.gets()


@pytest.mark.parametrize(
    ("arguments", "wire"),
    [
        (("PING",), b"*1\r\n$4\r\nPING\r\n"),
        (
            ("SET", "k\u00e9", b"\x00\r\n"),
            b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$3\r\n\x00\r\n\r\n",
        ),
        (("INCRBY", "n", -7), b"*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n$2\r\n-7\r\n"),
        (("X", 1.5), b"*2\r\n$1\r\nX\r\n$3\r\n1.5\r\n"),
    ],
)
def test_encode_command(arguments: Any, wire: bytes) -> None:
    """
    A command is an array of bulk strings: text in UTF-8, numbers in decimal.
    """
    assert encode_command(*arguments) == wire


def test_encode_refuses_bool() -> None:
    """
    A bool is refused rather than sent as a number.
    """
    with pytest.raises(TypeError):
        encode_command("SET", "k", True)
