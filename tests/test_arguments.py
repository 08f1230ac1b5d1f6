"""
The argument types of protocol v1, both directions: a receiver refuses an
out-of-range value with a C{ValueError} saying why, and so does a sender.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from amp_dispatch_commands import MAX_NUMBER_TEXT, BoundedInteger, HostName, Identifier, Seconds

IDENTIFIER = Identifier()
HOST = HostName()
PORT = BoundedInteger(1, 65535)
COUNT = BoundedInteger(0, 10**9)
SEQ = BoundedInteger(-(2**63), 2**63 - 1)
SECONDS = Seconds(86_400.0)

# Text at the bounds: 1 byte, 255 ASCII bytes, 255 UTF-8 bytes of which most
# are two-byte characters.
TEXT_BOUNDS = ["a", "a" * 255, "\u00e9" * 127 + "a", "gpu-pool.eu/\u4e2d"]
TEXT_IDS = ["1-byte", "255-ascii", "255-utf8", "non-ascii"]

# (value, words the refusal must contain)
TEXT_REFUSED = [
    ("", "empty"),
    ("a" * 256, "255"),
    ("\u00e9" * 128, "255"),
]
TEXT_REFUSED_IDS = ["empty", "256-ascii", "256-utf8"]
CONTROL = ["w\x00", "w\n", "\tw", "w\x7f", "w\x85"]
CONTROL_IDS = ["nul", "newline", "tab", "del", "c1-nel"]

text_types = pytest.mark.parametrize("kind", [IDENTIFIER, HOST], ids=["Identifier", "HostName"])


# -- Identifier and HostName ----------------------------------------------------


@text_types
@pytest.mark.parametrize("text", TEXT_BOUNDS, ids=TEXT_IDS)
def test_text_from_string_accepts(kind: Any, text: str) -> None:
    """
    Text of 1 to 255 UTF-8 bytes is received as sent.
    """
    assert kind.fromString(text.encode("utf-8")) == text


@text_types
@pytest.mark.parametrize("text", TEXT_BOUNDS, ids=TEXT_IDS)
def test_text_to_string_accepts(kind: Any, text: str) -> None:
    """
    Text of 1 to 255 UTF-8 bytes is sent as its UTF-8 bytes.
    """
    assert kind.toString(text) == text.encode("utf-8")


@text_types
@pytest.mark.parametrize(("text", "why"), TEXT_REFUSED, ids=TEXT_REFUSED_IDS)
def test_text_from_string_refuses(kind: Any, text: str, why: str) -> None:
    """
    Empty text, or text over 255 UTF-8 bytes, is refused on receipt.
    """
    with pytest.raises(ValueError, match=why):
        kind.fromString(text.encode("utf-8"))


@text_types
@pytest.mark.parametrize(("text", "why"), TEXT_REFUSED, ids=TEXT_REFUSED_IDS)
def test_text_to_string_refuses(kind: Any, text: str, why: str) -> None:
    """
    Empty text, or text over 255 UTF-8 bytes, is refused before sending.
    """
    with pytest.raises(ValueError, match=why):
        kind.toString(text)


@text_types
def test_text_from_string_refuses_bad_utf8(kind: Any) -> None:
    """
    Bytes that are not UTF-8 are refused on receipt with a C{ValueError}.
    """
    with pytest.raises(ValueError, match="utf-8"):
        kind.fromString(b"w\xff\xfe")


@pytest.mark.parametrize("text", CONTROL, ids=CONTROL_IDS)
def test_identifier_from_string_refuses_control(text: str) -> None:
    """
    An identifier with a control character (category Cc) is refused on receipt.
    """
    with pytest.raises(ValueError, match="control"):
        IDENTIFIER.fromString(text.encode("utf-8"))


@pytest.mark.parametrize("text", CONTROL, ids=CONTROL_IDS)
def test_identifier_to_string_refuses_control(text: str) -> None:
    """
    An identifier with a control character is refused before sending.
    """
    with pytest.raises(ValueError, match="control"):
        IDENTIFIER.toString(text)


def test_identifier_accepts_format_characters() -> None:
    """
    Only category Cc is refused: a zero-width joiner (Cf) and a space pass.
    """
    assert IDENTIFIER.fromString("a\u200db c".encode()) == "a\u200db c"


# -- BoundedInteger -------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 80, 65535])
def test_integer_from_string_accepts(value: int) -> None:
    """
    A value within the bounds, the bounds included, is received.
    """
    assert PORT.fromString(b"%d" % (value,)) == value


@pytest.mark.parametrize("value", [1, 80, 65535])
def test_integer_to_string_accepts(value: int) -> None:
    """
    A value within the bounds, the bounds included, is sent as its digits.
    """
    assert PORT.toString(value) == b"%d" % (value,)


@pytest.mark.parametrize("value", [0, -1, 65536])
def test_integer_from_string_refuses_out_of_range(value: int) -> None:
    """
    A value outside the bounds is refused on receipt, naming them.
    """
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        PORT.fromString(b"%d" % (value,))


@pytest.mark.parametrize("value", [0, -1, 65536])
def test_integer_to_string_refuses_out_of_range(value: int) -> None:
    """
    A value outside the bounds is refused before sending, naming them.
    """
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        PORT.toString(value)


@pytest.mark.parametrize("raw", [b"abc", b"8.5", b"", b"0x50"])
def test_integer_from_string_refuses_non_integer(raw: bytes) -> None:
    """
    Bytes that are not an integer are refused, shown in the message.
    """
    with pytest.raises(ValueError, match="must be an integer"):
        PORT.fromString(raw)


@pytest.mark.parametrize("value", [True, 8.0, "80", None])
def test_integer_to_string_refuses_non_integer(value: Any) -> None:
    """
    A value that is not an C{int} (a C{bool} neither) is refused before sending.
    """
    with pytest.raises(ValueError, match="must be an integer"):
        PORT.toString(value)


def test_integer_from_string_shows_short_value() -> None:
    """
    The refusal of a long non-integer shows only its start.
    """
    with pytest.raises(ValueError) as raised:
        PORT.fromString(b"x" * 1000)
    assert len(str(raised.value)) < 100


@pytest.mark.parametrize("value", [-(2**63), 0, 2**63 - 1])
def test_integer_wide_bounds(value: int) -> None:
    """
    Bounds as wide as a signed 64-bit integer's go both ways.
    """
    assert SEQ.fromString(SEQ.toString(value)) == value


@pytest.mark.parametrize("value", [-(2**63) - 1, 2**63])
def test_integer_past_wide_bounds(value: int) -> None:
    """
    One past a 64-bit bound is refused on receipt and before sending.
    """
    with pytest.raises(ValueError, match="must be within"):
        SEQ.fromString(b"%d" % (value,))
    with pytest.raises(ValueError, match="must be within"):
        SEQ.toString(value)


def test_integer_from_string_refuses_long_text() -> None:
    """
    The text of a number longer than C{MAX_NUMBER_TEXT} is refused before it
    is parsed, even if it would be in range (leading zeros).
    """
    with pytest.raises(ValueError, match="must be an integer of at most 32 characters"):
        COUNT.fromString(b"0" * (MAX_NUMBER_TEXT + 1))
    assert COUNT.fromString(b"0" * MAX_NUMBER_TEXT) == 0


def test_integer_from_string_refuses_thousands_of_digits() -> None:
    """
    An integer of thousands of digits is refused on its length, with a short
    message.
    """
    with pytest.raises(ValueError, match="at most 32 characters") as raised:
        COUNT.fromString(b"9" * 4300)
    assert len(str(raised.value)) < 100


def test_integer_optional() -> None:
    """
    C{optional} is passed on to AMP.
    """
    assert (BoundedInteger(1, 5, optional=True).optional, PORT.optional) == (True, False)


# -- Seconds --------------------------------------------------------------------

SECONDS_ACCEPTED: List[float] = [0.0, 0.001, 30.0, 86_400.0]


@pytest.mark.parametrize("value", SECONDS_ACCEPTED)
def test_seconds_from_string_accepts(value: float) -> None:
    """
    A finite value of 0 or more is received.
    """
    assert SECONDS.fromString(repr(value).encode("ascii")) == value


@pytest.mark.parametrize("value", SECONDS_ACCEPTED)
def test_seconds_to_string_accepts(value: float) -> None:
    """
    A finite value of 0 or more is sent so that it reads back the same.
    """
    assert float(SECONDS.toString(value)) == value


@pytest.mark.parametrize("value", [0, 5, 86400])
def test_seconds_to_string_accepts_int(value: int) -> None:
    """
    An C{int} is accepted and sent as a float (stock AMP would refuse it).
    """
    assert SECONDS.toString(value) == b"%d.0" % (value,)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"-1.0", "negative"),
        (b"-0.001", "negative"),
        (b"nan", "finite"),
        (b"inf", "finite"),
        (b"-inf", "finite"),
        (b"1e999", "finite"),
        (b"86400.001", "at most 86400"),
        (b"1e300", "at most 86400"),
        (b"1" * 33, "at most 32 characters"),
        (b"abc", "must be a number"),
        (b"", "must be a number"),
    ],
)
def test_seconds_from_string_refuses(raw: bytes, why: str) -> None:
    """
    A negative, NaN, infinite or unparsable value is refused on receipt.
    """
    with pytest.raises(ValueError, match=why):
        SECONDS.fromString(raw)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (-1, "negative"),
        (-0.5, "negative"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (float("-inf"), "finite"),
        (86_401, "at most 86400"),
        (86_400.5, "at most 86400"),
        (10**400, "at most 86400"),
        (True, "must be a number"),
        ("1.0", "must be a number"),
    ],
)
def test_seconds_to_string_refuses(value: Any, why: str) -> None:
    """
    A negative, NaN, infinite or non-number value is refused before sending.
    """
    with pytest.raises(ValueError, match=why):
        SECONDS.toString(value)
