"""
C{scripts/test} and C{scripts/serve} on a copy of the scripts whose .venv is
fake: its programs (python, ruff, mypy, amp-dispatch) only write down how
they were called, so what each script runs, and when it installs, shows
without installing or running anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Every program of the fake .venv: appends its name and arguments to $CALLS.
_RECORDER = '#!/bin/sh\necho "${0##*/}${*:+ $*}" >> "$CALLS"\n'


class Checkout:
    """
    A copy of the scripts, the project files they read and a fake .venv.
    """

    def __init__(self, top: Path) -> None:
        self.top = top
        self.calls = top / "calls"
        (top / "scripts").mkdir()
        for script in ["_venv.sh", "test", "serve"]:
            shutil.copy2(ROOT / "scripts" / script, top / "scripts" / script)
        (top / "commands").mkdir()
        for project in ["pyproject.toml", "commands/pyproject.toml"]:
            shutil.copy2(ROOT / project, top / project)
        venv = top / ".venv" / "bin"
        venv.mkdir(parents=True)
        for program in ["python", "ruff", "mypy", "amp-dispatch"]:
            (venv / program).write_text(_RECORDER)
            (venv / program).chmod(0o755)

    def run(self, script: str, *argv: str) -> List[str]:
        """
        Run C{scripts/SCRIPT ARGV}; the programs it called, one line each.
        """
        self.calls.write_text("")
        subprocess.run(
            [str(self.top / "scripts" / script), *argv],
            check=True,
            capture_output=True,
            env=dict(os.environ, CALLS=str(self.calls)),
        )
        return self.calls.read_text().splitlines()


def installs(calls: List[str]) -> List[str]:
    """
    The C{pip install} calls among C{calls}.
    """
    return [c for c in calls if c.startswith("python -m pip install")]


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    return Checkout(tmp_path)


def test_test_lints_then_tests(checkout: Checkout) -> None:
    """
    C{scripts/test ARGS} runs ruff, mypy, then pytest with ARGS.
    """
    calls = checkout.run("test", "-k", "lease")
    assert [c for c in calls if not c.startswith("python -m pip")] == [
        "ruff check .",
        "mypy",
        "python -m pytest -k lease",
    ]


def test_no_lint_only_tests(checkout: Checkout) -> None:
    """
    C{scripts/test --no-lint ARGS} runs pytest with ARGS, no ruff or mypy.
    """
    checkout.run("test")
    assert checkout.run("test", "-k", "lease", "--no-lint", "-x") == [
        "python -m pytest -k lease -x"
    ]


def test_first_run_installs_every_extra(checkout: Checkout) -> None:
    """
    The first run installs both projects, editable, with every extra.
    """
    assert installs(checkout.run("serve"))[-1].endswith(" -e ./commands -e .[dev]")


def test_switching_scripts_does_not_reinstall(checkout: Checkout) -> None:
    """
    Once C{scripts/test} has installed, C{scripts/serve} runs without
    installing, and the other way round.
    """
    checkout.run("test", "--no-lint")
    assert checkout.run("serve", "--lease-grace", "5") == ["amp-dispatch serve --lease-grace 5"]
    assert installs(checkout.run("test", "--no-lint")) == []


def test_changed_project_file_reinstalls(checkout: Checkout) -> None:
    """
    A change to a project file installs again.
    """
    checkout.run("serve")
    with open(checkout.top / "commands" / "pyproject.toml", "a") as project:
        project.write("\n# changed\n")
    assert installs(checkout.run("serve")) != []
