"""
What C{--version} prints, on every command: this package's version, the
schema package's and the protocol's.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from .._versions import PROTOCOL_VERSION, __version__, schema_version


def version_text() -> str:
    """
    C{amp-dispatch 0.1.0 (amp-dispatch-commands 1.2.0, protocol v1)}.
    """
    return (
        f"amp-dispatch {__version__} (amp-dispatch-commands {schema_version()}, "
        f"protocol v{PROTOCOL_VERSION})"
    )


class VersionOption:
    """
    A C{usage.Options} mixin: C{--version} prints L{version_text} (not
    Twisted's version, which C{usage.Options} prints by default).
    """

    def opt_version(self) -> NoReturn:
        """
        Print the version (and the schema's and protocol's) and exit.
        """
        print(version_text())
        sys.exit(0)


__all__ = ["VersionOption", "version_text"]
