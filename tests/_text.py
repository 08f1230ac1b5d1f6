"""
Reading printed tables in tests: the words of the line that starts with a
given word.
"""

from __future__ import annotations

from typing import List, Optional


def words(text: str, first: str) -> Optional[List[str]]:
    """
    The words of the first line of C{text} that starts (after spaces) with
    C{first}; C{None} when none does.
    """
    for line in text.splitlines():
        if line.strip().startswith(first):
            return line.split()
    return None
