"""
Log set-up for the command line: structlog events as console lines for people
or JSON lines for machines, and Twisted's own warnings and errors passed into
the same stream.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, List, TextIO

import structlog
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogBeginner
from zope.interface import provider

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("console", "json")


def configure(
    log_format: str = "console", level: str = "info", stream: TextIO = sys.stdout
) -> None:
    """
    Send structlog events at C{level} and above to C{stream}, and Twisted's
    log events of level warn and above into structlog.
    """
    _configure_structlog(
        log_format, level, structlog.PrintLoggerFactory(stream), stream.isatty(), True
    )
    globalLogBeginner.beginLoggingTo([_from_twisted], redirectStandardIO=False)


def configure_under_twist(log_format: str = "console", level: str = "info") -> None:
    """
    Send structlog events at C{level} and above into Twisted's log, whose
    observers C{twist} has set up (C{twist --log-format} decides their form).
    """
    _configure_structlog(log_format, level, lambda *args: _TwistedLog(), False, False)


class _TwistedLog:
    """
    A structlog logger that emits each rendered event into Twisted's log as
    one Twisted event (the rendered text in its C{amp_dispatch_event} field).
    """

    def __init__(self) -> None:
        self._log = Logger(namespace="amp_dispatch")

    def _emit(self, level: LogLevel, rendered: str) -> None:
        self._log.emit(level, "{amp_dispatch_event}", amp_dispatch_event=rendered)

    def debug(self, rendered: str) -> None:
        self._emit(LogLevel.debug, rendered)

    def info(self, rendered: str) -> None:
        self._emit(LogLevel.info, rendered)

    msg = info

    def warning(self, rendered: str) -> None:
        self._emit(LogLevel.warn, rendered)

    def error(self, rendered: str) -> None:
        self._emit(LogLevel.error, rendered)

    critical = exception = error


def _configure_structlog(
    log_format: str, level: str, factory: Any, colors: bool, timestamps: bool
) -> None:
    processors: List[Any] = [structlog.processors.add_log_level]
    if timestamps:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    if log_format == "json":
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=colors))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


_twisted_log = structlog.get_logger("twisted")


@provider(ILogObserver)
def _from_twisted(event: Dict[str, Any]) -> None:
    """
    Pass a Twisted log event of level warn or above on to structlog.
    """
    level = event.get("log_level", LogLevel.info)
    if level < LogLevel.warn:
        return
    fields: Dict[str, Any] = {"system": event.get("log_namespace", "twisted")}
    failure = event.get("log_failure")
    if failure is not None:
        fields["exc_info"] = (failure.type, failure.value, failure.getTracebackObject())
    message = formatEvent(event) or (failure.getErrorMessage() if failure else "")
    if level >= LogLevel.error:
        _twisted_log.error(message, **fields)
    else:
        _twisted_log.warning(message, **fields)
