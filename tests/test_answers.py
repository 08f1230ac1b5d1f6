"""
The answers encoded by hand (L{_answers}) are the bytes the schema's own
encoding writes, and a page is cut where the paging rule says.
"""

from __future__ import annotations

from typing import Any, Dict, List

from amp_dispatch_commands import MAX_PAGE, ListWorkers, NextWorker
from attrs import asdict
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_dispatch._records import RegisteredWorker
from amp_dispatch.protocol._answers import MAX_PAGE_BYTES, encode_page, encode_worker

TEXT = st.text(min_size=1, max_size=80)
LONG_TEXT = st.text(alphabet="\u00e9x", min_size=100, max_size=127)
WORKERS = st.builds(
    RegisteredWorker,
    worker_id=st.one_of(TEXT, LONG_TEXT),
    host=st.one_of(TEXT, LONG_TEXT),
    port=st.integers(1, 65535),
    pool=st.one_of(TEXT, LONG_TEXT),
    capacity=st.integers(0, 10**9),
    free=st.integers(-(10**9), 10**9),
    expires_in=st.one_of(st.just(-1.0), st.floats(0, 86_400)),
)


def schema_value(rows: List[Dict[str, Any]]) -> bytes:
    """
    The C{workers} value the schema's L{amp.AmpList} writes for C{rows}.
    """
    value: bytes = ListWorkers.makeResponse({"workers": rows}, None)[b"workers"]
    return value


@settings(max_examples=200, deadline=None)
@given(st.lists(WORKERS, max_size=100), st.integers(1, MAX_PAGE))
def test_pageAsSchema(workers: List[RegisteredWorker], limit: int) -> None:
    """
    A page is the schema's encoding of the first C{limit} workers, cut
    before the one that would take the rows past L{MAX_PAGE_BYTES}, and
    names the last worker of the page when more follow.
    """
    rows: List[Dict[str, Any]] = []
    size = 2
    for worker in workers:
        size += len(schema_value([asdict(worker)]))
        if len(rows) == limit or size > MAX_PAGE_BYTES:
            break
        rows.append(asdict(worker))
    more = len(rows) < len(workers)
    assert encode_page(iter(workers), limit) == (
        schema_value(rows),
        rows[-1]["worker_id"] if more else None,
    )


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT, st.integers(1, 65535))
def test_workerAsSchema(worker_id: str, host: str, port: int) -> None:
    """
    A C{NextWorker} answer's keys and values are the schema's.
    """
    answer = NextWorker.makeResponse({"worker_id": worker_id, "host": host, "port": port}, None)
    answer[b"_answer"] = b"t"
    assert bytes(answer.serialize()) == b"\x00\x07_answer\x00\x01t" + encode_worker(
        worker_id, host, port
    )
