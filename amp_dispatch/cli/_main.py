"""
The C{amp-dispatch} command: C{serve} runs the dispatcher, C{probe} talks to
one, C{top} watches one.
"""

from __future__ import annotations

import os
import sys
from typing import Any, List, NoReturn, Optional

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python import usage

from .._log import get_logger
from ._logging import configure
from ._probe import ProbeOptions, quiet_logging, run_probe
from ._serve import ServeOptions, make_service
from ._top import TopOptions, run_top
from ._version import VersionOption


class Options(VersionOption, usage.Options):
    """
    The C{amp-dispatch} command line.
    """

    synopsis = "Usage: amp-dispatch serve|probe|top [options]"
    subCommands = [
        ["serve", None, ServeOptions, "Run the dispatcher."],
        ["probe", None, ProbeOptions, "Send one command to a dispatcher and print the answer."],
        ["top", None, TopOptions, "A live view of a dispatcher's pools and busiest workers."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a command: serve, probe or top")


async def _serve(reactor: Any, options: ServeOptions) -> None:
    # Listen only once the reactor runs: its SIGINT/SIGTERM handlers are in
    # place then, so a signal right after "listening" stops us cleanly.
    running: Deferred[None] = Deferred()
    reactor.callWhenRunning(running.callback, None)
    await running
    configure(options["log-format"], options["log-level"])
    service = make_service(options, reactor)
    try:
        await service.listen()
    except Exception as e:
        get_logger("amp_dispatch").error("cannot listen", error=str(e))
        raise SystemExit(1) from None
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await Deferred()  # until SIGINT or SIGTERM stops the reactor


def _command_path(options: usage.Options) -> List[str]:
    """
    The words of the (sub)command being parsed: C{["amp-dispatch", "probe", "next"]}.
    """
    words = ["amp-dispatch"]
    while options is not None and options.subCommand is not None:
        words.append(options.subCommand)
        options = options.subOptions
    return words


def main(argv: Optional[List[str]] = None) -> NoReturn:
    """
    Run the C{amp-dispatch} command with C{argv} (default: C{sys.argv[1:]});
    quiet when its output's reader has gone (C{amp-dispatch --help | head}).
    """
    try:
        _main(argv)
    except SystemExit:
        _flush_quietly()
        raise
    except BrokenPipeError:
        _flush_quietly()
        sys.exit(1)
    sys.exit(0)


def _flush_quietly() -> None:
    """
    Flush standard output; if its reader has gone, point it at /dev/null
    so that the flush at exit does not print a traceback.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _main(argv: Optional[List[str]]) -> None:
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        print(f"amp-dispatch: {e}", file=sys.stderr)
        print(f"Run '{' '.join(_command_path(options))} --help' for help.", file=sys.stderr)
        sys.exit(2)
    if options.subCommand == "serve":
        react(_serve, [options.subOptions])
    quiet_logging()
    if options.subCommand == "top":
        react(run_top, [options.subOptions])
    react(run_probe, [options.subOptions])
