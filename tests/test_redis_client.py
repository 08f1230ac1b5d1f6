"""
The store's Redis client (L{RedisProtocol}) against real servers, Redis and
Valkey, over loopback.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, List

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from amp_dispatch.store._redis import RedisProtocol, StoreConnectionLost
from amp_dispatch.store._resp import PythonReader, ReplyError
from tests._store_servers import StoreServer


@pytest.fixture(params=["default", "python"])
def reader(request: pytest.FixtureRequest) -> Any:
    """
    Each reply reader: the default one (hiredis where installed) and the
    pure-Python one.
    """
    from amp_dispatch.store._resp import make_reader

    return make_reader if request.param == "default" else PythonReader


@pytest_twisted.async_yield_fixture
async def redis(reactor: Any, store_server: StoreServer, reader: Any) -> AsyncIterator[Any]:
    """
    A connection to an empty store.
    """
    store_server.command("FLUSHALL")
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", store_server.port)
    protocol = await connectProtocol(endpoint, RedisProtocol(reader))
    yield protocol
    protocol.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_ping(redis: RedisProtocol) -> None:
    """
    A simple string reply comes as bytes.
    """
    assert await redis.execute("PING") == b"PONG"


@pytest_twisted.ensureDeferred
async def test_set_get_nil(redis: RedisProtocol) -> None:
    """
    Bulk strings come as bytes, byte for byte; a missing key as None.
    """
    value = bytes(range(256)) * 4 + b"\r\n"
    assert await redis.execute("SET", "k", value) == b"OK"
    assert await redis.execute("GET", "k") == value
    assert await redis.execute("GET", "nothing") is None


@pytest_twisted.ensureDeferred
async def test_pipelined_in_order(redis: RedisProtocol) -> None:
    """
    Many commands sent at once get their own replies, in order.
    """
    replies = [redis.execute("INCR", "n") for _ in range(2000)]
    values = [await reply for reply in replies]
    assert values == list(range(1, 2001))


@pytest_twisted.ensureDeferred
async def test_arrays_and_integers(redis: RedisProtocol) -> None:
    """
    Arrays come as lists (nested as nested lists), integers as ints.
    """
    await redis.execute("RPUSH", "l", "a", "b", "c")
    assert await redis.execute("LRANGE", "l", 0, -1) == [b"a", b"b", b"c"]
    script = "return {1, {'x', 2}, redis.call('LLEN', KEYS[1])}"
    assert await redis.execute("EVAL", script, 1, "l") == [1, [b"x", 2], 3]


@pytest_twisted.ensureDeferred
async def test_error_reply_fails_only_its_command(redis: RedisProtocol) -> None:
    """
    An error reply fails its command with L{ReplyError} naming it; the
    commands around it are answered.
    """
    before = redis.execute("SET", "k", "1")
    bad = redis.execute("NOSUCHCOMMAND")
    after = redis.execute("GET", "k")
    assert await before == b"OK"
    with pytest.raises(ReplyError, match="unknown command"):
        await bad
    assert await after == b"1"


@pytest_twisted.ensureDeferred
async def test_noscript(redis: RedisProtocol) -> None:
    """
    EVALSHA of a script the store does not hold fails with NOSCRIPT (the
    store reloads scripts on it).
    """
    with pytest.raises(ReplyError, match=r"^NOSCRIPT"):
        await redis.execute("EVALSHA", "0" * 40, 0)


@pytest_twisted.ensureDeferred
async def test_connection_lost_fails_waiting(redis: RedisProtocol) -> None:
    """
    Commands waiting when the connection closes fail with
    L{StoreConnectionLost}; later ones fail at once.
    """
    waiting = redis.execute("BLPOP", "never", 0)
    assert redis.transport is not None
    redis.transport.loseConnection()
    with pytest.raises(StoreConnectionLost):
        await waiting
    with pytest.raises(StoreConnectionLost):
        await redis.execute("PING")


@pytest_twisted.ensureDeferred
async def test_send_then_in_order_with_execute(redis: RedisProtocol) -> None:
    """
    Replies of commands sent to sinks and of commands awaited come in the
    order the commands went out; an error reply goes to its sink as a
    L{ReplyError}.
    """
    from amp_dispatch.store._resp import encode_command

    got: List[Any] = []
    redis.send_then(encode_command("SET", "k", "1"), got.append)
    awaited = redis.execute("INCR", "k")
    redis.send_then(encode_command("INCR", "k", "no"), got.append)
    redis.send_then(encode_command("GET", "k"), got.append)
    assert await awaited == 2
    await redis.execute("PING")
    assert got[0] == b"OK"
    assert isinstance(got[1], ReplyError)
    assert got[2] == b"2"


@pytest_twisted.ensureDeferred
async def test_send_then_connection_lost(redis: RedisProtocol) -> None:
    """
    A sink waiting when the connection closes gets the connection's error;
    one sent after gets it at once.
    """
    from amp_dispatch.store._resp import encode_command

    got: List[Any] = []
    redis.send_then(encode_command("BLPOP", "nothing", "5"), got.append)
    closed = redis.execute("BLPOP", "nothing", "5")
    assert redis.transport is not None
    redis.transport.loseConnection()
    with pytest.raises(StoreConnectionLost):
        await closed
    assert len(got) == 1 and isinstance(got[0], StoreConnectionLost)
    redis.send_then(encode_command("PING"), got.append)
    assert len(got) == 2 and isinstance(got[1], StoreConnectionLost)
