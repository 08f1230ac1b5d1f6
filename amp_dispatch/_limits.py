"""
File descriptors: the process's limit raised as far as it goes at start, and
the front-end listener's connection cap fitted under it, so that the
scheduler listener can always accept.
"""

from __future__ import annotations

from typing import Union

import structlog

try:
    import resource
except ImportError:  # not on POSIX: no limit to raise
    resource = None  # type: ignore[assignment]

_log = structlog.get_logger("amp_dispatch.limits")

#: File descriptors kept for everything but connections: the listeners,
#: standard streams, the reactor's own, Twisted's EMFILE reserve, logs.
FD_RESERVE = 64

#: What L{raise_fd_limit} returns when there is no limit.
UNLIMITED = -1


def raise_fd_limit() -> int:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard limit (logging both), and
    return the soft limit now in force, or L{UNLIMITED}.
    """
    if resource is None:
        return UNLIMITED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = soft
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            raised = hard
        except (ValueError, OSError) as e:
            _log.warning("file descriptor limit not raised", soft=soft, hard=hard, error=str(e))
    _log.info("file descriptor limit", soft=_shown(raised), was=_shown(soft), hard=_shown(hard))
    return UNLIMITED if raised == resource.RLIM_INFINITY else raised


def frontend_cap(wanted: int, scheduler_connections: int, fd_limit: int) -> int:
    """
    The front-end connection cap to use: C{wanted}, lowered (with a warning)
    so that front-end connections, the scheduler's and L{FD_RESERVE} fit
    under C{fd_limit} (or L{UNLIMITED}).
    """
    if fd_limit == UNLIMITED:
        return wanted
    room = fd_limit - scheduler_connections - FD_RESERVE
    if wanted <= room:
        return wanted
    cap = max(1, room)
    _log.warning(
        "connection cap lowered",
        role="frontend",
        max_connections=cap,
        wanted=wanted,
        fd_limit=fd_limit,
        scheduler_connections=scheduler_connections,
        reserve=FD_RESERVE,
    )
    return cap


def _shown(limit: int) -> Union[int, str]:
    return "unlimited" if resource is not None and limit == resource.RLIM_INFINITY else limit


__all__ = ["FD_RESERVE", "UNLIMITED", "frontend_cap", "raise_fd_limit"]
