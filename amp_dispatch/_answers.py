"""
Answers encoded by hand, byte for byte as the schema's own encoding would
write them (keys sorted, as L{amp.AmpBox.serialize} does), where that costs
less: the worker of a C{NextWorker} answer, and a C{ListWorkers} page.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from ._framing import END, pack_length
from ._records import RegisteredWorker

#: Room kept under AMP's 65,535-byte value limit for a ListWorkers page.
MAX_PAGE_BYTES = 60_000


def encode_worker(worker_id: str, host: str, port: int) -> bytes:
    """
    The keys and values of a C{NextWorker} answer, and the end of the box:
    everything after the C{_answer} tag.
    """
    encoded_host = host.encode("utf-8")
    encoded_port = b"%d" % (port,)
    encoded_id = worker_id.encode("utf-8")
    return b"".join(
        (
            b"\x00\x04host",
            pack_length(len(encoded_host)),
            encoded_host,
            b"\x00\x04port",
            pack_length(len(encoded_port)),
            encoded_port,
            b"\x00\x09worker_id",
            pack_length(len(encoded_id)),
            encoded_id,
            END,
        )
    )


def _row(worker: RegisteredWorker) -> bytes:
    """
    One worker as one box of C{ListWorkers}' C{workers} list.
    """
    capacity = b"%d" % (worker.capacity,)
    expires_in = repr(worker.expires_in).encode("ascii")
    free = b"%d" % (worker.free,)
    host = worker.host.encode("utf-8")
    pool = worker.pool.encode("utf-8")
    port = b"%d" % (worker.port,)
    worker_id = worker.worker_id.encode("utf-8")
    return b"".join(
        (
            b"\x00\x08capacity",
            pack_length(len(capacity)),
            capacity,
            b"\x00\x0aexpires_in",
            pack_length(len(expires_in)),
            expires_in,
            b"\x00\x04free",
            pack_length(len(free)),
            free,
            b"\x00\x04host",
            pack_length(len(host)),
            host,
            b"\x00\x04pool",
            pack_length(len(pool)),
            pool,
            b"\x00\x04port",
            pack_length(len(port)),
            port,
            b"\x00\x09worker_id",
            pack_length(len(worker_id)),
            worker_id,
            END,
        )
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
