"""
The versions a dispatcher reports (C{--version}, metrics): this package's,
the installed schema package's, and the protocol's.
"""

from __future__ import annotations

from importlib import metadata

from amp_dispatch_commands import PROTOCOL_VERSION

from . import __version__


def schema_version() -> str:
    """
    The installed C{amp-dispatch-commands} distribution's version.
    """
    try:
        return metadata.version("amp-dispatch-commands")
    except metadata.PackageNotFoundError:
        return "not installed"


__all__ = ["PROTOCOL_VERSION", "__version__", "schema_version"]
