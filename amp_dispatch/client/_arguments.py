"""
A call's arguments and answer as the clients hold them, and the check of the
arguments on the sending side: a value the schema refuses fails the call at
once, as the dispatcher's C{INVALID_ARGUMENT} would, without sending it.
"""

from __future__ import annotations

from typing import Any, Dict, Type

from amp_dispatch_commands import InvalidArgument
from twisted.protocols import amp

#: The arguments of one call, by Python name; C{None} leaves an optional one out.
Arguments = Dict[str, Any]

#: A command's parsed answer, by Python name.
Answer = Dict[str, Any]


def check_arguments(command: Type[amp.Command], arguments: Arguments) -> Arguments:
    """
    Check C{arguments} against C{command}'s argument types as sending would.

    @return: the arguments to send: those not C{None}.
    @raise InvalidArgument: a required argument is missing or a value is out
        of range; the message names the field and why, as the dispatcher's
        C{INVALID_ARGUMENT} answers do.
    """
    sendable = {name: value for name, value in arguments.items() if value is not None}
    for wire_name, argument in command.arguments:
        name = wire_name.decode("ascii")
        if name not in sendable:
            if not argument.optional:
                raise InvalidArgument(f"{name}: missing")
            continue
        # The schema's types raise InvalidArgument, naming the field.
        argument.toBox(wire_name, {}, {name: sendable[name]}, None)
    return sendable


__all__ = ["Answer", "Arguments", "check_arguments"]
