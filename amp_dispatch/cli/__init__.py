"""
The C{amp-dispatch} command: C{serve} runs the dispatcher, C{probe} sends it
one command; the log set-up both use.
"""

from ._main import main

__all__ = ["main"]
