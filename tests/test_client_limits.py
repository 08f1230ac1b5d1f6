"""
What a client allows a dispatcher, and what it does so the dispatcher keeps
it: the box limit on what it reads, and the keep-alive under the
dispatcher's idle timeout.  In memory, on a L{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any, List, MutableMapping

from twisted.protocols import amp

from amp_dispatch.client import DispatcherUnavailable, Worker
from amp_dispatch.client._defaults import CLIENT_KEEPALIVE
from amp_dispatch.server._config import DEFAULT_CONFIG
from amp_dispatch.testing import MemoryDispatcher
from tests._deferreds import failure_of, fired, result_of
from tests.test_client_fastpath import Wire, answer, error

Logs = List[MutableMapping[str, Any]]


def test_box_over_limit_drops_connection(logs: Logs) -> None:
    """
    A box from the dispatcher past the client's limit drops the connection
    as soon as a length says so: the call waiting fails, with one warning.
    """
    wire = Wire(max_box_bytes=4_096)
    call = wire.client.next_worker()
    wire.send(b"\x00\x01k" + (5_000).to_bytes(2, "big"))
    failure_of(call, DispatcherUnavailable)
    [warning] = [log for log in logs if log["event"] == "dispatcher connection dropped"]
    assert (warning["reason"], warning["log_level"]) == ("box over 4096 bytes", "warning")


def test_default_limit_takes_largest_page() -> None:
    """
    The default limit takes a box with a 65,535-byte value (the largest a
    C{ListWorkers} page can be).
    """
    wire = Wire()
    call = wire.client.next_worker()
    [tag] = wire.tags()
    box = amp.AmpBox(amp.parseString(answer(tag))[0])
    box[b"padding"] = b"x" * 65_535
    wire.send(bytes(box.serialize()))
    assert result_of(call) == Worker("w1", "10.0.0.1", 9000)


def test_answer_one_byte_per_read() -> None:
    """
    An answer read one byte at a time is read whole.
    """
    wire = Wire()
    call = wire.client.next_worker()
    [tag] = wire.tags()
    data = answer(tag)
    wire.send(*(data[i : i + 1] for i in range(len(data))))
    assert result_of(call) == Worker("w1", "10.0.0.1", 9000)


def stats_sent(wire: Wire) -> int:
    return [box[amp.COMMAND] for box in wire.boxes()].count(b"Stats")


def test_keepalive_when_silent() -> None:
    """
    A connection that sent nothing for C{keepalive} seconds sends a
    C{Stats}.
    """
    wire = Wire()
    wire.reactor.advance(CLIENT_KEEPALIVE - 1)
    assert stats_sent(wire) == 0
    wire.reactor.advance(1)
    assert stats_sent(wire) == 1


def test_no_keepalive_while_calls_go_out() -> None:
    """
    Calls made within the period count as traffic: no C{Stats} then.
    """
    wire = Wire()
    wire.reactor.advance(CLIENT_KEEPALIVE / 2)
    wire.client.next_worker()
    wire.reactor.advance(CLIENT_KEEPALIVE / 2)
    assert stats_sent(wire) == 0
    wire.reactor.advance(CLIENT_KEEPALIVE)
    assert stats_sent(wire) == 1


def test_keepalive_counts_from_last_call() -> None:
    """
    The keep-alive goes out C{keepalive} seconds after the last call, not up
    to twice that.
    """
    wire = Wire()
    wire.reactor.advance(CLIENT_KEEPALIVE / 2)
    wire.client.next_worker()
    wire.reactor.advance(CLIENT_KEEPALIVE - 0.1)
    assert stats_sent(wire) == 0
    wire.reactor.advance(0.1)
    assert stats_sent(wire) == 1


def test_answer_to_no_call_ignored(logs: Logs) -> None:
    """
    An answer or error from the dispatcher to no call, or a box that is not
    an answer, is ignored with a warning (no traceback); the connection and
    the calls waiting go on.
    """
    wire = Wire()
    call = wire.client.next_worker()
    [tag] = wire.tags()
    wire.send(answer(b"999"), error(b"998", b"X"), b"\x00\x00", answer(tag))
    assert result_of(call) == Worker("w1", "10.0.0.1", 9000)
    warnings = [log for log in logs if log["event"] == "dispatcher box ignored"]
    assert [log["reason"] for log in warnings] == [
        "an answer to no call",
        "an answer to no call",
        "not an answer",
    ]
    assert not wire.pump.clientIO.disconnected


def test_keepalive_off() -> None:
    """
    A C{keepalive} of 0 sends nothing of its own.
    """
    wire = Wire(keepalive=0)
    wire.reactor.advance(10 * CLIENT_KEEPALIVE)
    assert wire.received() == b""


def test_keepalive_under_idle_timeout() -> None:
    """
    The clients' default keep-alive is shorter than the dispatcher's default
    idle timeout.
    """
    assert 0 < CLIENT_KEEPALIVE < DEFAULT_CONFIG.idle_timeout


def idle_for(seconds: float, keepalive: float) -> bool:
    """
    Whether a front-end client of the real listener (in memory) still has
    its connection after C{seconds} without a call: a call then is answered
    at once (a client that lost it would wait for its next one).
    """
    dispatcher = MemoryDispatcher()
    client = dispatcher.frontend_client(keepalive=keepalive, retry_policy=lambda attempt: 3_600.0)
    for _ in range(int(seconds)):
        dispatcher.clock.advance(1)
        dispatcher.flush()
    answered = client.stats()
    dispatcher.flush()
    return fired(answered)


def test_dispatcher_keeps_quiet_client() -> None:
    """
    Against the real front-end listener, a client with the default
    keep-alive stays connected through twice the idle timeout.
    """
    assert idle_for(2 * DEFAULT_CONFIG.idle_timeout, CLIENT_KEEPALIVE)


def test_dispatcher_closes_silent_client() -> None:
    """
    Without keep-alive, the listener closes it after its idle timeout.
    """
    assert not idle_for(DEFAULT_CONFIG.idle_timeout + 2, 0)
