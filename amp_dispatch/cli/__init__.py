"""
The C{amp-dispatch} command: C{serve} runs the dispatcher, C{probe} sends it
one command, C{top} watches it live; the log set-up.
"""

from ._main import main

__all__ = ["main"]
