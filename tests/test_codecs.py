"""
The schema-driven codecs (L{_codecs}): arguments parsed by the schema's
argument objects, and boxes encoded byte for byte as the schema's own
encoding writes them.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from amp_dispatch_commands import (
    MAX_PAGE,
    InvalidArgument,
    ListWorkers,
    NextWorker,
    Stats,
    WorkerUpdate,
)
from attrs import asdict
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.protocols import amp

from amp_dispatch._records import RegisteredWorker, Worker
from amp_dispatch.protocol import _codecs
from amp_dispatch.protocol._codecs import (
    MAX_PAGE_BYTES,
    BoxEncoder,
    CommandArguments,
    answer,
    arguments_of,
    encode_page,
    error,
    list_encoder,
    response_encoder,
)
from amp_dispatch.protocol._roles import EncodedWorker

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
ROWS = list_encoder(ListWorkers, b"workers")


def schema_value(rows: List[Dict[str, Any]]) -> bytes:
    """
    The C{workers} value the schema's L{amp.AmpList} writes for C{rows}.
    """
    value: bytes = ListWorkers.makeResponse({"workers": rows}, None)[b"workers"]
    return value


@settings(max_examples=200, deadline=None)
@given(st.lists(WORKERS, max_size=100), st.integers(1, MAX_PAGE))
def test_page_as_schema(workers: List[RegisteredWorker], limit: int) -> None:
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
    page = workers[:limit]
    assert encode_page(ROWS, page, len(workers) > limit) == (
        schema_value(rows),
        rows[-1]["worker_id"] if more else None,
    )


@settings(max_examples=100, deadline=None)
@given(TEXT, TEXT, st.integers(1, 65535))
def test_worker_as_schema(worker_id: str, host: str, port: int) -> None:
    """
    A C{NextWorker} answer is the bytes of the schema's answer.
    """
    expected = NextWorker.makeResponse({"worker_id": worker_id, "host": host, "port": port}, None)
    expected[amp.ANSWER] = b"t"
    encoded = answer(b"t", response_encoder(NextWorker).of(Worker(worker_id, host, port)))
    assert encoded == bytes(expected.serialize())
    assert answer(b"t", EncodedWorker(worker_id, host, port).answer) == encoded


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 10**6))
def test_stats_as_schema(workers: int, free: int, waiting: int) -> None:
    """
    A C{Stats} answer encoded from a mapping is the bytes of the schema's.
    """
    values = {
        "workers": workers,
        "free_slots": free,
        "waiting": waiting,
        "dispatched": 7,
        "protocol": 1,
    }
    expected = Stats.makeResponse(values, None)
    expected[amp.ANSWER] = b"9"
    assert answer(b"9", response_encoder(Stats).of_mapping(values)) == bytes(expected.serialize())


def test_left_out_when_none() -> None:
    """
    An optional value of C{None} is left out of the box.
    """
    encoder = BoxEncoder([(b"b", amp.Unicode(optional=True)), (b"a", amp.Integer())])
    assert encoder.of_mapping({"a": 1, "b": None}) == b"\x00\x01a\x00\x011\x00\x00"


@given(st.binary(max_size=20), st.text(max_size=300))
def test_error_as_amp(tag: bytes, description: str) -> None:
    """
    An error box is the bytes AMP writes for a declared error.
    """
    expected = amp.AmpBox(
        {
            amp.ERROR: tag,
            amp.ERROR_CODE: b"NO_WORKER_AVAILABLE",
            amp.ERROR_DESCRIPTION: description.encode("utf-8"),
        }
    )
    assert error(tag, b"NO_WORKER_AVAILABLE", description) == bytes(expected.serialize())


# -- parsing arguments -----------------------------------------------------------


UPDATE = CommandArguments(WorkerUpdate)
VALID: Dict[bytes, bytes] = {
    b"worker_id": b"w1",
    b"host": b"10.0.0.1",
    b"port": b"9000",
    b"capacity": b"3",
}


def test_parse_in_schema_order() -> None:
    """
    The values come in the order of the schema's arguments, C{None} for
    optional ones left out.
    """
    assert UPDATE.parse({**VALID, b"ttl": b"2.5"}) == ["w1", "10.0.0.1", 9000, 3, None, None, 2.5]


def test_parse_names_missing_field() -> None:
    """
    A required argument left out is L{InvalidArgument} naming it.
    """
    with pytest.raises(InvalidArgument, match=r"^host: missing$"):
        UPDATE.parse({key: value for key, value in VALID.items() if key != b"host"})


@pytest.mark.parametrize(
    ("field", "raw", "why"),
    [
        (b"port", b"0", "must be within 1..65535"),
        (b"capacity", b"x", "must be an integer"),
        (b"worker_id", b"\xff", "utf-8"),
        (b"ttl", b"inf", "finite"),
    ],
)
def test_parse_names_bad_field(field: bytes, raw: bytes, why: str) -> None:
    """
    A value the schema's argument refuses is L{InvalidArgument} naming the
    field and why.
    """
    with pytest.raises(InvalidArgument) as raised:
        UPDATE.parse({**VALID, field: raw})
    assert str(raised.value).startswith(field.decode() + ": ")
    assert why in str(raised.value)


def test_parse_bound_follows_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A bound changed in the schema changes the parser built from it.
    """
    port = dict(WorkerUpdate.arguments)[b"port"]
    monkeypatch.setattr(port, "maximum", 8999)
    with pytest.raises(InvalidArgument, match=r"^port: must be within 1\.\.8999$"):
        CommandArguments(WorkerUpdate).parse(VALID)


def test_remembered_values_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Remembered values never number more than the bound, however many
    distinct texts peers send.
    """
    monkeypatch.setattr(_codecs, "REMEMBERED", 8)
    parser = CommandArguments(NextWorker, remembered=[b"pool"])
    sizes = []
    for i in range(30):
        assert parser.parse({b"pool": b"pool-%d" % (i,)}) == [f"pool-{i}", None]
        sizes.append(len(parser.seen[b"pool"]))
    assert max(sizes) == 8


def test_remembered_refused_not_kept() -> None:
    """
    A value refused is refused again, and not remembered.
    """
    parser = CommandArguments(NextWorker, remembered=[b"pool"])
    for _ in range(2):
        with pytest.raises(InvalidArgument, match=r"^pool: "):
            parser.parse({b"pool": b"bad\x00pool"})
    assert parser.seen == {b"pool": {}}


def test_parser_made_once_per_command() -> None:
    """
    The receivers' parser of a command is made once, not per connection
    (writing one costs about 100 us).
    """
    assert arguments_of(WorkerUpdate) is arguments_of(WorkerUpdate)
