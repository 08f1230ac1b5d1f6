"""
The C{amp-dispatch} command's own text: versions, usage lines, option
errors that name their option, quiet on a closed pipe, and where C{probe
stats} asks.
"""

from __future__ import annotations

import subprocess
import sys
from typing import List

import pytest
from twisted.python import usage

from amp_dispatch import __version__
from amp_dispatch.cli._main import main
from amp_dispatch.cli._probe import ProbeOptions
from amp_dispatch.cli._serve import ServeOptions


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """
    Run C{amp-dispatch argv} in-process; what it printed on stdout.
    """
    with pytest.raises(SystemExit):
        main(list(argv))
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["serve", "--version"],
        ["probe", "--version"],
        ["probe", "next", "--version"],
        ["top", "--version"],
    ],
)
def test_version_on_every_command(capsys: pytest.CaptureFixture[str], argv: List[str]) -> None:
    """
    C{--version} on every command prints ours, the schema package's and the
    protocol's, not Twisted's.
    """
    out = run(capsys, *argv)
    assert out.startswith(f"amp-dispatch {__version__} (amp-dispatch-commands ")
    assert out.rstrip().endswith(", protocol v1)")
    assert "Twisted" not in out


@pytest.mark.parametrize(
    ("argv", "usage_line"),
    [
        (["--help"], "Usage: amp-dispatch serve|probe|top [options]"),
        (["serve", "--help"], "Usage: amp-dispatch serve [--frontend EP]"),
        (["probe", "--help"], "Usage: amp-dispatch probe [--frontend EP]"),
        (["top", "--help"], "Usage: amp-dispatch top [--scheduler EP]"),
    ],
)
def test_one_usage_line(
    capsys: pytest.CaptureFixture[str], argv: List[str], usage_line: str
) -> None:
    """
    Each command's help starts with one usage line of its own.
    """
    first = run(capsys, *argv).splitlines()[0]
    assert first.startswith(usage_line)
    assert first.count("Usage:") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lease-grace", "-1"], "--lease-grace: must be a finite number >= 0, not '-1'"),
        (["--max-waiting", "x"], "--max-waiting: must be an integer, not 'x'"),
        (["--max-box-bytes", "10"], "--max-box-bytes: must be within"),
        (["--replica-timeout", "1"], "--replica-timeout: must be at least 2"),
        (["--frontend", "garbage"], "--frontend: Unknown endpoint type: 'garbage'"),
        (["--scheduler", "tcp:notaport"], "--scheduler: "),
        (["--store", "mongodb://x"], "--store: "),
    ],
)
def test_serve_option_errors_name_the_option(argv: List[str], message: str) -> None:
    """
    A refused value of C{serve} names its option.
    """
    with pytest.raises(usage.UsageError) as caught:
        ServeOptions().parseOptions(argv)
    assert str(caught.value).startswith(message)


def test_quiet_on_closed_pipe() -> None:
    """
    Help written to a pipe whose reader has gone ends quietly, without a
    traceback.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "amp_dispatch", "serve", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    process.wait(timeout=60)
    assert b"Traceback" not in err
    assert b"BrokenPipeError" not in err


@pytest.mark.parametrize(
    ("argv", "listener"),
    [
        (["stats"], "frontend"),
        (["stats", "--scheduler"], "scheduler"),
        (["--scheduler", "tcp:10.0.0.1:8751", "stats"], "scheduler"),
        (["--frontend", "tcp:10.0.0.1:8750", "stats"], "frontend"),
        (["--frontend", "tcp:a:1", "--scheduler", "tcp:b:2", "stats"], "frontend"),
    ],
)
def test_probe_stats_asks_where_told(argv: List[str], listener: str) -> None:
    """
    C{probe stats} asks the scheduler listener with C{--scheduler}, or when
    only the scheduler's endpoint was given; else the front end.
    """
    options = ProbeOptions()
    options.parseOptions(argv)
    assert options.subOptions.listener() == listener
