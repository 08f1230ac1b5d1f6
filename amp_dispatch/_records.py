"""
Workers as the dispatcher answers about them: one set of record classes for
the queue, the responders and the clients.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class Worker:
    """
    A C{NextWorker} answer: the worker that takes the job, and where.
    """

    worker_id: str
    host: str
    port: int


@frozen
class RegisteredWorker:
    """
    A registered worker as C{ListWorkers} shows it.

    @ivar capacity: the free slots its last accepted update gave.
    @ivar free: its free slots now (capacity minus answers since).
    @ivar expires_in: seconds until its earliest pending removal (ttl or lease
        grace), -1.0 when none is pending.
    """

    worker_id: str
    host: str
    port: int
    pool: str
    capacity: int
    free: int
    expires_in: float
