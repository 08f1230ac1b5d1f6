"""
The wheels C{scripts/build} makes, built once per test session (without
isolation: the backend and its readme plugin come from the test extra): each
carries the LICENSE, its description (what an index shows) links only to
addresses or within itself, and the command installed from them reports the
wheels' versions.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import zipfile
from email.message import Message
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each distribution and the directory it is built from.
PROJECTS = {"amp_dispatch": ROOT, "amp_dispatch_commands": ROOT / "commands"}

#: A Markdown link's target: C{[text](target)} or C{![alt](target)}.
_LINK_TARGET = re.compile(r"\]\(([^)\s]*)")
#: A target that is an address (a scheme) or an anchor in the same text.
_SELF_CONTAINED = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:|#")


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """
    The wheel of each distribution in L{PROJECTS}, by distribution name.
    """
    out = tmp_path_factory.mktemp("wheels")
    for source in PROJECTS.values():
        subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", out, source],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return {name: next(out.glob(f"{name}-*.whl")) for name in PROJECTS}


def dist_info(wheel: Path) -> str:
    """
    The C{.dist-info} directory of C{wheel}: C{NAME-VERSION.dist-info}.
    """
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def metadata(wheel: Path) -> Message:
    """
    The METADATA of C{wheel}, parsed (the description is the body).
    """
    with zipfile.ZipFile(wheel) as archive:
        return email.message_from_bytes(archive.read(f"{dist_info(wheel)}/METADATA"))


def link_targets(markdown: str) -> List[str]:
    """
    The target of every inline link and image of C{markdown}.
    """
    return _LINK_TARGET.findall(markdown)


def test_link_targets_found() -> None:
    """
    L{link_targets} finds links and images, with or without an anchor.
    """
    text = "[a](docs/x.md#part), ![b](p.png) and [c](../README.md)"
    assert link_targets(text) == ["docs/x.md#part", "p.png", "../README.md"]


@pytest.mark.parametrize("name", PROJECTS)
def test_description_links_only_addresses_and_anchors(wheels: Dict[str, Path], name: str) -> None:
    """
    The wheel's description links to no file by a relative path (which an
    index cannot show): only to addresses and to anchors of itself.
    """
    description = metadata(wheels[name]).get_payload()
    assert isinstance(description, str) and description.strip()
    relative = [t for t in link_targets(description) if not _SELF_CONTAINED.match(t)]
    assert relative == []


@pytest.mark.parametrize("name", PROJECTS)
def test_wheel_carries_the_license(wheels: Dict[str, Path], name: str) -> None:
    """
    Each wheel declares the MIT licence and ships the repository's LICENSE.
    """
    wheel = wheels[name]
    assert metadata(wheel)["License-Expression"] == "MIT"
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read(f"{dist_info(wheel)}/licenses/LICENSE")
    assert shipped == (ROOT / "LICENSE").read_bytes()


def test_version_from_the_wheels(wheels: Dict[str, Path], tmp_path: Path) -> None:
    """
    C{amp-dispatch --version}, run from the installed wheels, names both
    wheels' versions.
    """
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    subprocess.run(
        install + [str(wheel) for wheel in wheels.values()],
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    show = (
        "import amp_dispatch; print(amp_dispatch.__file__); "
        "from amp_dispatch.cli import main; main(['--version'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", show],
        capture_output=True,
        text=True,
        check=True,
        # Not the checkout's directory, whose amp_dispatch would come first.
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(target)),
    )
    where, version = done.stdout.splitlines()
    assert Path(where).is_relative_to(target)
    ours, schema = (metadata(wheels[name])["Version"] for name in PROJECTS)
    assert version == f"amp-dispatch {ours} (amp-dispatch-commands {schema}, protocol v1)"
