"""
The loggers of amp-dispatch's modules: silent unless the application routes
their events somewhere.

A library must not decide where its log lines go.  L{get_logger} gives a
logger that sends each event through structlog when structlog has been
configured (C{structlog.is_configured()}: the command line, the C{twist}
plugin and the test suite configure it), and otherwise to the standard
library's C{logging}, to the logger of the same name (C{amp_dispatch.client},
...) as one line, the event then its fields as C{key=value}.  The
C{amp_dispatch} logger has a C{NullHandler}, as the standard library asks of
libraries: an application that configures neither sees nothing (not even
warnings), one that configures C{logging} sees the events its levels let
through.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, MutableMapping, Tuple

import structlog
from structlog.stdlib import BoundLogger, filter_by_level

#: The logger every amp-dispatch logger is below.
ROOT = "amp_dispatch"

logging.getLogger(ROOT).addHandler(logging.NullHandler())


def _render(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> Tuple[Tuple[str], Dict[str, Any]]:
    """
    The arguments of the standard library call: the event and its fields as
    one line, and the exception to add, if any.
    """
    exc_info = event.pop("exc_info", None)
    text = str(event.pop("event", ""))
    fields = " ".join(f"{key}={value!r}" for key, value in event.items())
    return ((f"{text} {fields}" if fields else text),), (
        {"exc_info": exc_info} if exc_info else {}
    )


class Logger:
    """
    A module's logger: structlog's logger of its name when structlog is
    configured, else the standard library's (see the module's docstring).
    Its methods are those of structlog's bound loggers the code uses, each
    C{(event, **fields)}; C{log} takes a C{logging} level first.  Each is
    the chosen logger's own method, looked up per call (no more work per
    event than structlog's own, so C{debug} stays cheap when filtered out).
    """

    __slots__ = ("_stdlib", "_structlog")

    def __init__(self, name: str) -> None:
        self._structlog: Any = structlog.get_logger(name)
        self._stdlib = BoundLogger(logging.getLogger(name), [filter_by_level, _render], {})

    def _target(self) -> Any:
        return self._structlog if structlog.is_configured() else self._stdlib

    @property
    def debug(self) -> Callable[..., Any]:
        return self._target().debug  # type: ignore[no-any-return]

    @property
    def info(self) -> Callable[..., Any]:
        return self._target().info  # type: ignore[no-any-return]

    @property
    def warning(self) -> Callable[..., Any]:
        return self._target().warning  # type: ignore[no-any-return]

    @property
    def error(self) -> Callable[..., Any]:
        return self._target().error  # type: ignore[no-any-return]

    @property
    def exception(self) -> Callable[..., Any]:
        return self._target().exception  # type: ignore[no-any-return]

    @property
    def log(self) -> Callable[..., Any]:
        return self._target().log  # type: ignore[no-any-return]


def get_logger(name: str) -> Logger:
    """
    The logger of C{name}, C{"amp_dispatch"} or a name below it.
    """
    return Logger(name)


__all__ = ["ROOT", "Logger", "get_logger"]
