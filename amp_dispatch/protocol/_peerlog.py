"""
How events a peer causes are logged: every value it sent shown truncated,
and the lines of one source (a connection, a listener) limited per second,
so a peer cannot make the log big.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, MutableMapping, Optional, Union

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: The most characters of a peer's value a log line shows.
MAX_SHOWN = 200

#: Lines one source may log per period, and the period in seconds.
LINES_PER_PERIOD = 5
PERIOD = 1.0


def shown(value: Union[bytes, str]) -> str:
    """
    C{value} as a log field: at most L{MAX_SHOWN} characters, then its
    length when it is longer (bytes that are not UTF-8 shown escaped).
    """
    if isinstance(value, bytes):
        if len(value) <= MAX_SHOWN:
            return value.decode("utf-8", "backslashreplace")
        head = value[:MAX_SHOWN].decode("utf-8", "backslashreplace")
        return f"{head}... ({len(value)} bytes)"
    if len(value) <= MAX_SHOWN:
        return value
    return f"{value[:MAX_SHOWN]}... ({len(value)} characters)"


class LogLimiter:
    """
    Lets at most C{lines} log lines of one source through per C{period}
    seconds; counts the others, and reports the count with C{report} once
    the period is over (or at L{stop}).

    @param clock: where time comes from.
    @param report: called with the number of lines held back.
    """

    def __init__(
        self,
        clock: IReactorTime,
        report: Callable[[int], None],
        *,
        lines: int = LINES_PER_PERIOD,
        period: float = PERIOD,
    ) -> None:
        self._clock = clock
        self._report = report
        self._lines = lines
        self._period = period
        self._ends = -1.0
        self._count = 0
        self.held_back = 0
        self._timer: Optional[IDelayedCall] = None

    def allow(self) -> bool:
        """
        Whether one more line may be logged now; if not, it is counted.
        """
        now = self._clock.seconds()
        if now >= self._ends:
            self._period_over()
            self._ends = now + self._period
            self._count = 0
        if self._count < self._lines:
            self._count += 1
            return True
        self.held_back += 1
        if self._timer is None:
            self._timer = self._clock.callLater(self._ends - now, self._period_over)
        return False

    def _period_over(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self.held_back:
            held_back, self.held_back = self.held_back, 0
            self._report(held_back)

    def stop(self) -> None:
        """
        Report what is held back now, and set no more timers (the source is
        gone).
        """
        self._period_over()


class Warnings:
    """
    The warnings of one source (a connection, a listener), each event
    within its own L{LogLimiter}; what is held back is reported as one
    C{log lines suppressed} line naming the event.

    @param logger: the structlog logger to warn on.
    @param context: fields every line carries (the source's role, peer...);
        it may change later (a peer known once the connection starts).
    """

    def __init__(self, clock: IReactorTime, logger: Any, context: MutableMapping[str, Any]) -> None:
        self._clock = clock
        self._logger = logger
        self.context = context
        self._limiters: Dict[str, LogLimiter] = {}

    def warn(self, event: str, **fields: Any) -> None:
        """
        Log C{event} at warning with C{fields}, unless the source has
        logged it too often this second.
        """
        if self._allow(event):
            self._logger.warning(event, **self.context, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """
        As L{warn}, at error.
        """
        if self._allow(event):
            self._logger.error(event, **self.context, **fields)

    def _allow(self, event: str) -> bool:
        limiter = self._limiters.get(event)
        if limiter is None:
            limiter = self._limiters[event] = LogLimiter(
                self._clock, partial(self._held_back, event)
            )
        return limiter.allow()

    def stop(self) -> None:
        """
        Report what is held back now (the source is gone).
        """
        for limiter in self._limiters.values():
            limiter.stop()

    def _held_back(self, event: str, count: int) -> None:
        self._logger.warning("log lines suppressed", suppressed=event, count=count, **self.context)


__all__ = ["MAX_SHOWN", "LogLimiter", "Warnings", "shown"]
