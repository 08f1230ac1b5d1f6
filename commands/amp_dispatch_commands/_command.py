"""
What every command of the schema shares: a call that names an argument the
command does not take, or leaves out one it needs, raises the declared
L{InvalidArgument} naming it, before anything is sent (stock AMP raises its
own C{InvalidSignature}, which no caller of the schema expects).
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.protocols import amp

from ._errors import InvalidArgument


class SchemaCommand(amp.Command):
    """
    The base of the schema's commands (see the module).
    """

    def __init__(self, **arguments: Any) -> None:
        _check_names(type(self), arguments)
        super().__init__(**arguments)

    @classmethod
    def makeArguments(cls, objects: Dict[str, Any], proto: Any) -> Any:
        _check_names(cls, objects)
        return super().makeArguments(objects, proto)


def _check_names(command: Any, given: Dict[str, Any]) -> None:
    names = {name.decode("ascii"): argument for name, argument in command.arguments}
    for name in given:
        if name not in names:
            raise InvalidArgument(f"{name}: not an argument of {command.__name__}")
    for name, argument in names.items():
        if not argument.optional and given.get(name) is None:
            raise InvalidArgument(f"{name}: required")


__all__ = ["SchemaCommand"]
