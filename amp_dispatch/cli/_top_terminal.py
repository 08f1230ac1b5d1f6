"""
The terminal side of C{amp-dispatch top}'s live view: keys read from the
terminal without blocking the reactor (L{Keys}: cbreak mode, the terminal
file descriptor watched by the reactor, its mode restored on stop), and the
screen the frames are drawn on (L{Screen}: C{rich}'s live display on the
alternate screen, refreshed only when told, so no thread of its own).
"""

from __future__ import annotations

import os
import termios
import tty
from typing import Any, Callable, List, Optional

from attrs import frozen
from rich.console import Console, RenderableType
from rich.live import Live
from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer


@frozen
class TerminalModes:
    """
    How a terminal's mode is read, set to cbreak (keys come one at a time,
    not echoed; Ctrl-C still interrupts) and restored; tests give their own.
    """

    get: Callable[[int], Any] = termios.tcgetattr
    cbreak: Callable[[int], Any] = tty.setcbreak
    restore: Callable[[int, Any], Any] = lambda fd, mode: termios.tcsetattr(
        fd, termios.TCSADRAIN, mode
    )


@implementer(IReadDescriptor)
class Keys:
    """
    The keys pressed on the terminal C{fd}, each given to C{pressed} as a
    one-character string; read when the reactor sees them, never waited
    for.

    @param reactor: an C{IReactorFDSet}.
    @param read: reads up to a number of bytes from C{fd} (C{os.read}).
    """

    def __init__(
        self,
        reactor: Any,
        fd: int,
        pressed: Callable[[str], None],
        modes: TerminalModes = TerminalModes(),
        read: Callable[[int, int], bytes] = os.read,
    ) -> None:
        self._reactor = reactor
        self._fd = fd
        self._pressed = pressed
        self._modes = modes
        self._read = read
        self._saved: Optional[Any] = None

    def start(self) -> None:
        """
        Put the terminal in cbreak mode and watch it for keys.
        """
        self._saved = self._modes.get(self._fd)
        self._modes.cbreak(self._fd)
        self._reactor.addReader(self)

    def stop(self) -> None:
        """
        Stop watching and give the terminal its mode back (once, however
        often called).
        """
        self._reactor.removeReader(self)
        saved, self._saved = self._saved, None
        if saved is not None:
            self._modes.restore(self._fd, saved)

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        data = self._read(self._fd, 64)
        if not data:
            # The terminal is gone: nothing more to read.
            self._reactor.removeReader(self)
            return
        for key in data.decode("utf-8", "replace"):
            self._pressed(key)

    def connectionLost(self, reason: Failure) -> None:
        self._reactor.removeReader(self)

    def logPrefix(self) -> str:
        return "amp-dispatch top keys"


class Screen:
    """
    Frames drawn over each other on C{console}: on the alternate screen
    (left, with the cursor shown again, on L{stop}).
    """

    def __init__(self, console: Console) -> None:
        self._live = Live(
            console=console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = False

    def show(self, renderable: RenderableType) -> None:
        """
        Draw C{renderable} in place of the last frame.
        """
        if not self._started:
            self._live.start()
            self._started = True
        self._live.update(renderable, refresh=True)

    def stop(self) -> None:
        """
        Leave the alternate screen (once, however often called).
        """
        if self._started:
            self._started = False
            self._live.stop()


def stoppers(*stop: Callable[[], None]) -> Callable[[], None]:
    """
    One function that calls each of C{stop}, every one even if one fails
    (the terminal is restored whatever else went wrong).
    """

    def stop_all() -> None:
        errors: List[BaseException] = []
        for each in stop:
            try:
                each()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    return stop_all


__all__ = ["Keys", "Screen", "TerminalModes", "stoppers"]
