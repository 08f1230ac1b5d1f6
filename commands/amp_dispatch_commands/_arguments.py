"""
Argument types of the v1 commands.

Each type is wire-compatible with the stock AMP type it extends (the bytes are
the same) and adds the range checks of the protocol.  Both directions check:
a sender learns of a bad value before anything is sent, from C{callRemote}
itself, as the declared L{InvalidArgument} naming the field (C{"worker_id:
must be at most 255 UTF-8 bytes"}), the text the dispatcher would answer;
a receiver refuses one with a C{ValueError} whose text says why (the server
turns it into C{INVALID_ARGUMENT}, naming the field).
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict

from twisted.protocols import amp

from ._errors import InvalidArgument

MAX_TEXT_BYTES = 255

#: The most bytes the text of a number may take (a sign, digits, a point, an
#: exponent): longer text is refused before it is parsed, whatever it holds.
MAX_NUMBER_TEXT = 32


# Unicode category Cc is exactly these code points.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _check_text(text: str, *, printable: bool) -> str:
    if not isinstance(text, str):
        raise TypeError(f"must be text, not {type(text).__name__}")
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_TEXT_BYTES // 4 and len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValueError(f"must be at most {MAX_TEXT_BYTES} UTF-8 bytes")
    if printable and _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    return text


#: What encoding a value a sender passed raises when the value does not fit:
#: the checks' C{ValueError} (C{UnicodeError} among them), and what a value of
#: the wrong type makes the stock encoding raise.
_REFUSED = (ValueError, TypeError, AttributeError, OverflowError)


class _Sent(amp.Argument):
    """
    Sending: a value the type refuses raises the declared L{InvalidArgument},
    naming the field, instead of the bare error of the check.
    """

    def toBox(self, name: bytes, strings: Any, objects: Dict[str, Any], proto: Any) -> None:
        try:
            super().toBox(name, strings, objects, proto)
        except _REFUSED as e:
            raise InvalidArgument(f"{name.decode('ascii')}: {e}") from None


class Identifier(_Sent, amp.Unicode):
    """
    A worker id or pool name: 1 to 255 UTF-8 bytes, no control characters
    (Unicode category Cc).
    """

    def fromString(self, inString: bytes) -> str:
        return _check_text(inString.decode("utf-8"), printable=True)

    def toString(self, inObject: str) -> bytes:
        return _check_text(inObject, printable=True).encode("utf-8")


class HostName(_Sent, amp.Unicode):
    """
    A worker's host name or address: 1 to 255 UTF-8 bytes.
    """

    def fromString(self, inString: bytes) -> str:
        return _check_text(inString.decode("utf-8"), printable=False)

    def toString(self, inObject: str) -> bytes:
        return _check_text(inObject, printable=False).encode("utf-8")


class BoundedInteger(_Sent, amp.Integer):
    """
    An integer within C{minimum} and C{maximum} (inclusive).  Its text is at
    most L{MAX_NUMBER_TEXT} bytes.
    """

    def __init__(self, minimum: int, maximum: int, optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.minimum = minimum
        self.maximum = maximum

    def _check(self, value: int) -> int:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be within {self.minimum}..{self.maximum}")
        return value

    def fromString(self, inString: bytes) -> int:  # type: ignore[override]
        if len(inString) > MAX_NUMBER_TEXT:
            raise ValueError(f"must be an integer of at most {MAX_NUMBER_TEXT} characters")
        try:
            value = int(inString)
        except ValueError:
            raise ValueError(f"must be an integer, not {_shown(inString)}") from None
        return self._check(value)

    def toString(self, inObject: int) -> bytes:
        if isinstance(inObject, bool) or not isinstance(inObject, int):
            raise ValueError(f"must be an integer, not {_shown_object(inObject)}")
        return b"%d" % (self._check(inObject),)


class Seconds(_Sent, amp.Float):
    """
    A duration in seconds: finite, within 0 and C{maximum}.  A sender may give
    an C{int}; it is sent as a float.  Its text is at most
    L{MAX_NUMBER_TEXT} bytes.
    """

    def __init__(self, maximum: float, optional: bool = False) -> None:
        super().__init__(optional=optional)
        self.maximum = maximum

    def _check(self, value: float) -> float:
        if math.isnan(value) or math.isinf(value):
            raise ValueError("must be a finite number")
        if value < 0:
            raise ValueError("must not be negative")
        if value > self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}")
        return value

    def fromString(self, inString: bytes) -> float:  # type: ignore[override]
        if len(inString) > MAX_NUMBER_TEXT:
            raise ValueError(f"must be a number of at most {MAX_NUMBER_TEXT} characters")
        try:
            value = float(inString)
        except ValueError:
            raise ValueError(f"must be a number, not {_shown(inString)}") from None
        return self._check(value)

    def toString(self, inObject: float) -> bytes:
        if isinstance(inObject, bool) or not isinstance(inObject, (int, float)):
            raise ValueError(f"must be a number, not {_shown_object(inObject)}")
        if isinstance(inObject, int) and not -self.maximum <= inObject <= self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}")
        return repr(self._check(float(inObject))).encode("ascii")


def _shown(raw: bytes) -> str:
    """
    A short printable rendering of a received value, for error messages.
    """
    text = repr(raw[:40])[1:]
    return text + ("..." if len(raw) > 40 else "")


def _shown_object(value: object) -> str:
    """
    A short rendering of a value a sender passed, for error messages.
    """
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
