"""
CPU time and memory of a process, from C{/proc} (Linux).  Standard library only.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """
    User plus system CPU time of process C{pid} (all its threads), in clock
    ticks (C{CLOCK_TICKS} a second).
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces: count fields after its ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    # utime and stime are fields 14 and 15; fields[0] is field 3.
    return int(fields[11]) + int(fields[12])


def rss_bytes(pid: int) -> int:
    """
    The resident set size (VmRSS) of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


def busy_ticks() -> int:
    """
    CPU time spent in processes (user, nice, system) on all CPUs since boot,
    in clock ticks: beside a process's own time it shows whatever else ran.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    return int(fields[1]) + int(fields[2]) + int(fields[3])
