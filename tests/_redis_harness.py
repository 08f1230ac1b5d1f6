"""
The shared store under the conformance suite: L{RedisStore}s on a real
Redis or Valkey server, driven without a reactor.

Each store's link is a L{PumpedLink}: the real L{RedisProtocol} over a
blocking socket, plus a subscriber socket on the store's channel.  Pumping
sends what the protocols wrote, reads every reply, and then pings the
subscriber, so every wake-up published before is delivered (and the
commands it causes are answered too) before a test looks.  The store's time
is a key the harness moves (the scripts read it instead of C{TIME}), its
replica's time a L{Clock}: so the suite runs unchanged, step by step.
"""

from __future__ import annotations

import atexit
import select
import socket
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall

from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.store._redis import RedisProtocol
from amp_dispatch.store._redis_store import RedisStore
from amp_dispatch.store._resp import PythonReader, Value, encode_command
from tests._store_servers import StoreServer, server_binaries
from tests._stores import StoreHarness, resolved

#: Where the tests keep the store's time (milliseconds).
TIME_KEY = "amp:test:now"
#: Where the store's time starts.
START_MS = 1_000_000
#: The longest a pump waits for a reply before the test fails.
PUMP_TIMEOUT = 10.0

_SERVERS: Dict[str, Optional[StoreServer]] = {}


def shared_server(kind: str) -> StoreServer:
    """
    The store server of C{kind} for the whole run (started on first use,
    stopped at exit); skips the test when there is none.
    """
    if kind not in _SERVERS:
        binary = server_binaries().get(kind)
        server = None
        if binary is not None:
            server = StoreServer(kind, binary, Path(tempfile.mkdtemp(prefix=f"amp-{kind}-")))
            atexit.register(server.stop)
        _SERVERS[kind] = server
    found = _SERVERS[kind]
    if found is None:
        pytest.skip(f"no {kind} server (see tests/_store_servers.py)")
    return found


class _SocketTransport:
    """
    What L{RedisProtocol} writes to, kept until the pump sends it.
    """

    disconnecting = False

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    def writeSequence(self, data: Sequence[bytes]) -> None:
        for each in data:
            self.write(each)

    def loseConnection(self) -> None:
        self.connection.close()

    def flush(self) -> None:
        if self.out:
            self.connection.sendall(self.out)
            del self.out[:]


def _read(connection: socket.socket) -> bytes:
    # poll, not select: select refuses file descriptors past 1023.
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    if not poller.poll(PUMP_TIMEOUT * 1000):
        raise AssertionError(f"the store did not answer within {PUMP_TIMEOUT} s")
    data = connection.recv(1 << 16)
    if not data:
        raise AssertionError("the store closed the connection")
    return data


class PumpedLink:
    """
    A store's link to a real server, pumped by hand (see the module).
    """

    def __init__(self, port: int, store: RedisStore) -> None:
        self.store = store
        self.protocol = RedisProtocol()
        self.transport = _SocketTransport(socket.create_connection(("127.0.0.1", port)))
        self.protocol.makeConnection(self.transport)
        self._subscriber = socket.create_connection(("127.0.0.1", port))
        self._reader = PythonReader()
        self._subscriber.sendall(encode_command("SUBSCRIBE", store.channel))
        self._messages()

    def execute(self, *arguments: Value) -> Any:
        return self.protocol.execute(*arguments)

    def send(self, command: bytes) -> Any:
        return self.protocol.send(command)

    send_connected = send

    #: Commands always reach the server.
    ready = True

    def send_then(self, command: bytes, sink: Any) -> None:
        self.protocol.send_then(command, sink)

    def start(self) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def busy(self) -> bool:
        return bool(self.transport.out or self.protocol._waiting)

    def pump_replies(self) -> None:
        """
        Send what was written, and read until every command is answered.
        """
        while self.busy():
            self.transport.flush()
            if self.protocol._waiting:
                self.protocol.dataReceived(_read(self.transport.connection))

    def deliver(self) -> None:
        """
        Deliver every message published so far to the store.
        """
        self._subscriber.sendall(encode_command("PING"))
        for message in self._messages():
            self.store.woken(message)

    def _messages(self) -> List[bytes]:
        """
        Read the subscriber until its PING (or SUBSCRIBE) is answered; the
        messages before.
        """
        messages: List[bytes] = []
        while True:
            reply = self._reader.gets()
            while reply is False:
                self._reader.feed(_read(self._subscriber))
                reply = self._reader.gets()
            kind = reply[0]
            if kind == b"message":
                messages.append(reply[2])
            elif kind in (b"pong", b"subscribe"):
                return messages

    def close(self) -> None:
        self.transport.connection.close()
        self._subscriber.close()


def pump(links: Sequence[PumpedLink]) -> None:
    """
    Pump C{links} until none has a command unanswered or a message
    undelivered.
    """
    while True:
        for link in links:
            link.pump_replies()
        for link in links:
            link.deliver()
        if not any(link.busy() for link in links):
            return


class RedisHarness(StoreHarness):
    """
    A L{RedisStore} on the shared server of L{kind}, alone on it.
    """

    kind = "redis"

    def __init__(self, config: DispatcherConfig) -> None:
        super().__init__(config)
        self.server = shared_server(self.kind)
        self.server.command("FLUSHALL")
        self.server.command("SET", TIME_KEY, str(START_MS))
        self.links: List[PumpedLink] = []
        self.stores: List[RedisStore] = []
        self.silenced: List[RedisStore] = []
        self.redis_store = self.replica("r1")
        self.store = self.redis_store

    def replica(self, name: str) -> RedisStore:
        """
        Another replica on the same store (on the same clock).
        """
        config = self.config
        store = RedisStore(
            self.clock,
            lease_grace=config.lease_grace,
            max_waiting=config.max_waiting,
            max_waiting_per_owner=config.max_waiting_per_connection,
            time_key=TIME_KEY,
            name=name,
        )
        link = PumpedLink(self.server.port, store)
        store.attach(link)
        self.links.append(link)
        self.stores.append(store)
        self.resolve(store.connected("primary-1"))
        store.start()
        return store

    def silence(self, store: RedisStore) -> None:
        """
        Cut C{store} off, as a replica stopped or partitioned away: nothing
        it writes is sent, nothing published to it delivered, no heartbeat.
        """
        self.silenced.append(store)

    def unsilence(self, store: RedisStore) -> None:
        """
        Let C{store} talk again (what it wrote meanwhile goes out now).
        """
        self.silenced.remove(store)

    def pump(self) -> None:
        pump([link for link in self.links if link.store not in self.silenced])

    def close(self) -> None:
        for link in self.links:
            link.close()

    def settle(self) -> None:
        self.pump()

    def resolve(self, result: Any) -> Any:
        self.pump()
        return resolved(result)

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} go by for the store and its replicas, in steps no
        longer than a heartbeat (as they go by: each replica beats in each),
        every replica reaping at the end.
        """
        step = min(store.heartbeat_interval for store in self.stores)
        left = seconds
        while left > 0:
            now = min(step, left)
            left -= now
            self.server.command("INCRBY", TIME_KEY, str(round(now * 1000)))
            self.clock.advance(now)
            self.pump()
        for store in self.stores:
            if store not in self.silenced:
                self.resolve(store.beat())

    def timers(self) -> List[IDelayedCall]:
        beats = [store.heartbeat_call() for store in self.stores]
        return [call for call in self.clock.getDelayedCalls() if call not in beats]


class ValkeyHarness(RedisHarness):
    """
    The same, on Valkey.
    """

    kind = "valkey"


__all__ = ["PumpedLink", "RedisHarness", "ValkeyHarness", "shared_server"]
