"""
C{amp-dispatch probe}: placeholder, being written.
"""

from __future__ import annotations

from typing import Any

from twisted.python import usage


class ProbeOptions(usage.Options):
    """
    Options of the probe.
    """


async def run_probe(reactor: Any, options: ProbeOptions) -> None:
    raise SystemExit(1)
