"""
Answers encoded by hand, byte for byte as the schema's own encoding would
write them (keys sorted, as L{amp.AmpBox.serialize} does), where that costs
less: the worker of a C{NextWorker} answer, and a C{ListWorkers} page.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from .._records import RegisteredWorker
from ._framing import END, pack_length

#: Room kept under AMP's 65,535-byte value limit for a ListWorkers page.
MAX_PAGE_BYTES = 60_000


def _box(keys: Tuple[bytes, ...], values: Tuple[bytes, ...]) -> bytes:
    """
    The pairs of C{keys} (each already framed: its length, then itself)
    and C{values}, and the end of the box.
    """
    parts: List[bytes] = []
    for key, value in zip(keys, values):
        parts += (key, pack_length(len(value)), value)
    parts.append(END)
    return b"".join(parts)


def _framed(*keys: bytes) -> Tuple[bytes, ...]:
    return tuple(pack_length(len(key)) + key for key in keys)


# Sorted, as AmpBox.serialize writes them.
_WORKER_KEYS = _framed(b"host", b"port", b"worker_id")
_ROW_KEYS = _framed(b"capacity", b"expires_in", b"free", b"host", b"pool", b"port", b"worker_id")


def encode_worker(worker_id: str, host: str, port: int) -> bytes:
    """
    The keys and values of a C{NextWorker} answer, and the end of the box:
    everything after the C{_answer} tag.
    """
    return _box(_WORKER_KEYS, (host.encode("utf-8"), b"%d" % (port,), worker_id.encode("utf-8")))


def _row(worker: RegisteredWorker) -> bytes:
    """
    One worker as one box of C{ListWorkers}' C{workers} list.
    """
    return _box(
        _ROW_KEYS,
        (
            b"%d" % (worker.capacity,),
            repr(worker.expires_in).encode("ascii"),
            b"%d" % (worker.free,),
            worker.host.encode("utf-8"),
            worker.pool.encode("utf-8"),
            b"%d" % (worker.port,),
            worker.worker_id.encode("utf-8"),
        ),
    )


def encode_page(workers: Iterable[RegisteredWorker], limit: int) -> Tuple[bytes, Optional[str]]:
    """
    The C{workers} value of a C{ListWorkers} answer: up to C{limit} rows,
    fewer if they would pass L{MAX_PAGE_BYTES}; and the id to continue after
    when more follow.
    """
    rows: List[bytes] = []
    size = 2
    last: Optional[str] = None
    for worker in workers:
        row = _row(worker)
        size += len(row)
        if len(rows) == limit or size > MAX_PAGE_BYTES:
            return b"".join(rows), last
        rows.append(row)
        last = worker.worker_id
    return b"".join(rows), None


__all__ = ["MAX_PAGE_BYTES", "encode_page", "encode_worker"]
