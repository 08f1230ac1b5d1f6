"""
File descriptors: the process's limit raised as far as it goes at start, and
the front-end listener's connection cap fitted under it, so that the
scheduler listener can always accept.
"""

from __future__ import annotations

from typing import Tuple, Union

from .._log import get_logger

try:
    import resource
except ImportError:  # not on POSIX: no limit to raise
    resource = None  # type: ignore[assignment]

_log = get_logger("amp_dispatch.limits")

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


def fit_caps(frontend: int, scheduler: int, fd_limit: int) -> Tuple[int, int]:
    """
    The connection caps to use under C{fd_limit} (or L{UNLIMITED}): the
    scheduler's first (it must always get in), then the front end's in
    what is left, each lowered (with a warning) only as far as needed, and
    never below one; L{FD_RESERVE} fds are kept for everything else.
    """
    if fd_limit == UNLIMITED:
        return frontend, scheduler
    scheduler_cap = _lowered("scheduler", scheduler, fd_limit - FD_RESERVE - 1, fd_limit)
    frontend_cap = _lowered("frontend", frontend, fd_limit - FD_RESERVE - scheduler_cap, fd_limit)
    return frontend_cap, scheduler_cap


def _lowered(role: str, wanted: int, room: int, fd_limit: int) -> int:
    if wanted <= room:
        return wanted
    cap = max(1, room)
    _log.warning(
        "connection cap lowered",
        role=role,
        max_connections=cap,
        wanted=wanted,
        fd_limit=fd_limit,
        reserve=FD_RESERVE,
    )
    return cap


def _shown(limit: int) -> Union[int, str]:
    return "unlimited" if resource is not None and limit == resource.RLIM_INFINITY else limit


__all__ = ["FD_RESERVE", "UNLIMITED", "fit_caps", "raise_fd_limit"]
