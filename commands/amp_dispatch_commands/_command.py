"""
What every command of the schema shares: a call that names an argument the
command does not take, or leaves out one it needs, raises the declared
L{InvalidArgument} naming it, before anything is sent (stock AMP raises its
own C{InvalidSignature}, which no caller of the schema expects).
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict

from twisted.protocols import amp

from ._errors import InvalidArgument


class SchemaCommand(amp.Command):
    """
    The base of the schema's commands (see the module).  A call is checked
    where AMP makes it, when the command is made (C{callRemote} makes it
    first, then encodes its arguments).
    """

    # Each argument's Python name and whether it is optional, by command.
    _optional: ClassVar[Dict[str, bool]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._optional = {name.decode("ascii"): each.optional for name, each in cls.arguments}

    def __init__(self, **arguments: Any) -> None:
        optional = self._optional
        for name in arguments:
            if name not in optional:
                raise InvalidArgument(f"{name}: not an argument of {type(self).__name__}")
        for name, may_be_left_out in optional.items():
            if not may_be_left_out and arguments.get(name) is None:
                raise InvalidArgument(f"{name}: required")
        super().__init__(**arguments)


__all__ = ["SchemaCommand"]
