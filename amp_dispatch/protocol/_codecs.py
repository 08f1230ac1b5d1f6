"""
The schema drives the wire: arguments decoded and boxes encoded by the
argument objects of C{amp_dispatch_commands}, so a bound changed there
changes every path that reads or writes it.

L{CommandArguments} parses a command's arguments out of a received box (the
generic receivers and the fast paths both use it).  L{BoxEncoder} writes a
box of a command's answer (or of a C{ListWorkers} row) byte for byte as
L{amp.AmpBox.serialize} would (keys sorted), at a fraction of the cost of
building an L{amp.AmpBox}; L{answer} and L{error} frame it after its tag.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, cast

from amp_dispatch_commands import InvalidArgument
from twisted.protocols import amp

from .._records import RegisteredWorker
from ._framing import END, pack_length

#: Room kept under AMP's 65,535-byte value limit for a ListWorkers page.
MAX_PAGE_BYTES = 60_000

#: The errors an argument object's C{fromString} raises for a bad value.
_BAD_VALUE = (ValueError, TypeError, OverflowError)

#: The framed C{_answer} key, which every answer box starts with.
ANSWER_KEY = pack_length(len(amp.ANSWER)) + amp.ANSWER
_ERROR = pack_length(len(amp.ERROR)) + amp.ERROR
_ERROR_CODE = pack_length(len(amp.ERROR_CODE)) + amp.ERROR_CODE
_ERROR_DESCRIPTION = pack_length(len(amp.ERROR_DESCRIPTION)) + amp.ERROR_DESCRIPTION


#: The most values one remembered argument keeps (any peer may send any
#: text): past it, they are all forgotten.
REMEMBERED = 4096


class CommandArguments:
    """
    Parses the arguments of C{command} out of a box, by the schema's
    argument objects.

    The parser is a function written for the command's arguments when this
    is made, as attrs writes its classes' methods: a loop over the
    arguments costs twice as much per box, and C{WorkerUpdate} is hot.  Make
    one per command and keep it (see L{arguments_of}).

    @param remembered: the names of arguments whose parsed values are kept
        by their bytes (text that repeats, such as pool names), at most
        L{REMEMBERED} of each.
    @param record: if given, the values are given to it, in order, and
        L{parse} returns what it returns instead of a list.
    """

    def __init__(
        self,
        command: Type[amp.Command],
        remembered: Sequence[bytes] = (),
        record: Optional[Callable[..., Any]] = None,
    ) -> None:
        #: The values remembered, by argument name.
        self.seen: Dict[bytes, Dict[bytes, Any]] = {wire: {} for wire in remembered}
        self.parse: Callable[[Mapping[bytes, bytes]], Any] = _parser(command, self.seen, record)
        self.parse.__doc__ = _PARSE_DOC


_PARSE_DOC = """
The arguments' values in the schema's order (C{None} for an optional one
left out).

@raise InvalidArgument: an argument is missing, does not parse or is out of
    range; the message names the field and why.
"""


@cache
def arguments_of(command: Type[amp.Command]) -> CommandArguments:
    """
    The parser of C{command}'s arguments, made once (into a list, nothing
    remembered).
    """
    return CommandArguments(command)


def _parser(
    command: Type[amp.Command],
    seen: Mapping[bytes, Dict[bytes, Any]],
    record: Optional[Callable[..., Any]],
) -> Callable[[Mapping[bytes, bytes]], Any]:
    """
    The function that parses C{command}'s arguments out of a box by their
    C{fromString}, keeping the values of the arguments in C{seen} there, into
    a list or a C{record}.
    """
    lines = ["def parse(box):", "    get = box.get"]
    namespace: Dict[str, Any] = {
        "InvalidArgument": InvalidArgument,
        "BAD_VALUE": _BAD_VALUE,
        "REMEMBERED": REMEMBERED,
        "record": record,
        "new": tuple.__new__,
    }
    for i, (wire, argument) in enumerate(command.arguments):
        field = wire.decode("ascii")
        namespace[f"parse{i}"] = argument.fromString
        if argument.optional:
            lines += [f"    raw = get({wire!r})", "    if raw is None:", f"        v{i} = None"]
        else:
            lines += [
                "    try:",
                f"        raw = box[{wire!r}]",
                "    except KeyError:",
                f"        raise InvalidArgument({field + ': missing'!r}) from None",
            ]
        parse = [
            "try:",
            f"    v{i} = parse{i}(raw)",
            "except BAD_VALUE as e:",
            f"    raise InvalidArgument({field + ': '!r} + str(e)) from None",
        ]
        if wire in seen:
            namespace[f"seen{i}"] = seen[wire]
            parse = [
                f"v{i} = seen{i}.get(raw)",
                f"if v{i} is None:",
                *("    " + line for line in parse),
                f"    if len(seen{i}) >= REMEMBERED:",
                f"        seen{i}.clear()",
                f"    seen{i}[raw] = v{i}",
            ]
        if argument.optional:
            lines += ["    else:", *("        " + line for line in parse)]
        else:
            lines += ["    " + line for line in parse]
    values = ", ".join(f"v{i}" for i in range(len(command.arguments)))
    if record is None:
        lines.append(f"    return [{values}]")
    elif isinstance(record, type) and issubclass(record, tuple):
        # A named tuple: made as its _make makes it, without its __new__'s call.
        lines.append(f"    return new(record, ({values},))")
    else:
        lines.append(f"    return record({values})")
    exec("\n".join(lines), namespace)
    parse_box: Callable[[Mapping[bytes, bytes]], Any] = namespace["parse"]
    return parse_box


class BoxEncoder:
    """
    Encodes boxes whose keys are C{arguments} (a command's C{response}, or
    the rows of an L{amp.AmpList}) by their argument objects, keys sorted as
    L{amp.AmpBox.serialize} writes them; a value C{None} is left out.
    """

    def __init__(self, arguments: Sequence[Tuple[bytes, amp.Argument]]) -> None:
        self._fields = [
            (pack_length(len(wire)) + wire, wire.decode("ascii"), argument.toString)
            for wire, argument in sorted(arguments, key=lambda pair: pair[0])
        ]

    def of(self, record: object) -> bytes:
        """
        The pairs of the attributes of C{record} named as the keys, and the
        end of the box.
        """
        parts: List[bytes] = []
        for key, name, encode in self._fields:
            value = getattr(record, name)
            if value is not None:
                data = encode(value)
                parts += (key, pack_length(len(data)), data)
        parts.append(END)
        return b"".join(parts)

    def of_mapping(self, values: Mapping[str, Any]) -> bytes:
        """
        As L{of}, from a mapping of names to values.
        """
        parts: List[bytes] = []
        for key, name, encode in self._fields:
            value = values.get(name)
            if value is not None:
                data = encode(value)
                parts += (key, pack_length(len(data)), data)
        parts.append(END)
        return b"".join(parts)


def answer(tag: bytes, body: bytes) -> bytes:
    """
    The answer box to the call tagged C{tag}: C{_answer}, then C{body} (its
    other pairs, sorted after C{_answer}, and the end of the box).
    """
    return ANSWER_KEY + pack_length(len(tag)) + tag + body


def error(tag: bytes, code: bytes, description: str) -> bytes:
    """
    The error box to the call tagged C{tag}, as AMP writes a declared error.
    """
    text = description.encode("utf-8")
    return b"".join(
        (
            _ERROR,
            pack_length(len(tag)),
            tag,
            _ERROR_CODE,
            pack_length(len(code)),
            code,
            _ERROR_DESCRIPTION,
            pack_length(len(text)),
            text,
            END,
        )
    )


def response_encoder(command: Type[amp.Command]) -> BoxEncoder:
    """
    The encoder of C{command}'s answers (after the C{_answer} tag).
    """
    return BoxEncoder(command.response)


def list_encoder(command: Type[amp.Command], name: bytes) -> BoxEncoder:
    """
    The encoder of one box of the L{amp.AmpList} C{name} of C{command}'s
    answer.
    """
    rows = cast(amp.AmpList, dict(command.response)[name])
    return BoxEncoder(rows.subargs)


def encode_page(
    rows: BoxEncoder, workers: Sequence[RegisteredWorker], more: bool
) -> Tuple[bytes, Optional[str]]:
    """
    The value of a C{ListWorkers} answer's C{workers} (each worker one box
    encoded by C{rows}), cut short before it passes L{MAX_PAGE_BYTES}; and
    the id to continue after when more workers follow (C{more}, or cut).
    """
    encoded: List[bytes] = []
    size = 2
    last: Optional[str] = None
    for worker in workers:
        row = rows.of(worker)
        size += len(row)
        if size > MAX_PAGE_BYTES:
            return b"".join(encoded), last
        encoded.append(row)
        last = worker.worker_id
    return b"".join(encoded), last if more else None


__all__ = [
    "ANSWER_KEY",
    "MAX_PAGE_BYTES",
    "REMEMBERED",
    "BoxEncoder",
    "CommandArguments",
    "answer",
    "arguments_of",
    "encode_page",
    "error",
    "list_encoder",
    "response_encoder",
]
