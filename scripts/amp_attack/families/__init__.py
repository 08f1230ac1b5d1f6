"""
The attack families, in the order they run (each module says its method and
target).
"""

from __future__ import annotations

from typing import Dict, List

from ..harness import Family
from .connections import Churn, Slowloris
from .fds import Fds
from .flood import flood_families
from .fuzz import Fuzz
from .limits import BigInts, WaitingShare
from .logflood import LogFlood
from .parse import BigBox, SlowParse, SlowParseMegabyte
from .unread import Unread


def all_families() -> List[Family]:
    """
    One instance of every family, in running order.
    """
    return [
        Fuzz(),
        SlowParse(),
        SlowParseMegabyte(),
        BigBox(),
        Unread(),
        Fds(),
        *flood_families(),
        LogFlood(),
        BigInts(),
        WaitingShare(),
        Churn(),
        Slowloris(),
    ]


def by_name() -> Dict[str, Family]:
    return {f.name: f for f in all_families()}
