"""
The front end of C{commands/README.md} (the schema package's description)
against the real dispatcher: a script with plain C{callRemote}, run with
C{amp_dispatch} made unimportable so that it needs the schema package only.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Tuple

import pytest_twisted
from twisted.internet.utils import getProcessOutputAndValue

from ._process import LIVENESS_TIMEOUT, DispatcherProcess, probe_process

README = Path(__file__).resolve().parents[2] / "commands" / "README.md"

#: Runs the script (argv[1]) as C{__main__} with its arguments, where
#: C{import amp_dispatch} fails.
_WITHOUT_SERVER = (
    "import runpy, sys; sys.modules['amp_dispatch'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def example(directory: Path) -> Path:
    """
    The README's script, written to C{directory}.
    """
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert code is not None
    script = directory / "next_worker.py"
    script.write_text(code.group(1))
    return script


async def run_example(reactor: Any, script: Path, *argv: str) -> Tuple[str, str, int]:
    """
    Run the example without blocking the reactor; its stdout, stderr and
    exit status.
    """
    running = getProcessOutputAndValue(
        sys.executable,
        ["-c", _WITHOUT_SERVER, str(script), *argv],
        env=dict(os.environ),
        reactor=reactor,
    )
    running.addTimeout(LIVENESS_TIMEOUT, reactor)
    out, err, code = await running
    return out.decode("utf-8"), err.decode("utf-8"), code


@pytest_twisted.ensureDeferred
async def test_example_gets_a_worker(
    reactor: Any, dispatcher: DispatcherProcess, tmp_path: Path
) -> None:
    """
    The example prints the worker the dispatcher answers.
    """
    await probe_process(
        reactor,
        "--scheduler",
        dispatcher.scheduler,
        "update",
        "g1",
        "10.0.0.7",
        "9000",
        "1",
        "--pool",
        "gpu",
    )
    answer = await run_example(reactor, example(tmp_path), dispatcher.frontend, "gpu")
    assert answer == ("g1 10.0.0.7:9000\n", "", 0)


@pytest_twisted.ensureDeferred
async def test_example_reports_a_declared_error(
    reactor: Any, dispatcher: DispatcherProcess, tmp_path: Path
) -> None:
    """
    With no worker free, the example says the declared error and exits 1,
    with no traceback.
    """
    answer = await run_example(reactor, example(tmp_path), dispatcher.frontend, "gpu")
    assert answer == ("", "NoWorkerAvailable: no worker of pool 'gpu' has a free slot\n", 1)
