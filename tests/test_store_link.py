"""
The link to the store's primary (L{StoreLink}) against real servers, Redis
and Valkey, over loopback: ready and commands, a store killed and restarted
on the same port, a frozen store, passwords and databases, the subscriber
connection and its C{sync}, and a Sentinel failover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Callable, List, MutableMapping, Optional

import pytest
import pytest_twisted
import trustme
from amp_dispatch_commands import StoreUnavailable
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from amp_dispatch.store._address import StoreAddress
from amp_dispatch.store._link import PrimaryIdentity, StoreLink
from amp_dispatch.store._resp import ReplyError
from tests._deferreds import failure_of
from tests._pki import TLS_CLIENT_WARNINGS
from tests._store_servers import SentinelGroup, StoreServer, free_port

Logs = List[MutableMapping[str, Any]]

#: Seconds any one wait may take before the test fails (never hangs).
WAIT = 15.0


def address(port: int, **fields: Any) -> StoreAddress:
    """
    The address of a server on 127.0.0.1:C{port}.
    """
    return StoreAddress("redis", (("127.0.0.1", port),), **fields)


async def within(d: Deferred[Any], seconds: float = WAIT) -> Any:
    """
    C{d}'s result, or a failure if it takes more than C{seconds}.
    """
    from twisted.internet import reactor

    return await d.addTimeout(seconds, reactor)


async def eventually(check: Callable[[], bool], seconds: float = WAIT) -> None:
    """
    Wait until C{check()} holds, polling; fail after C{seconds}.
    """
    from twisted.internet import reactor

    waited = 0.0
    while not check():
        assert waited < seconds, "the condition did not come"
        await deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


def events(logs: Logs, event: str) -> List[MutableMapping[str, Any]]:
    """
    The logged events named C{event}.
    """
    return [log for log in logs if log["event"] == event]


class Links:
    """
    Makes links and stops them all at the end of the test.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.made: List[StoreLink] = []

    def __call__(self, where: StoreAddress, **options: Any) -> StoreLink:
        options.setdefault("backoff_max", 0.5)
        link = StoreLink(self.reactor, where, **options)
        self.made.append(link)
        return link


@pytest_twisted.async_yield_fixture
async def links(reactor: Any) -> AsyncIterator[Links]:
    """
    A maker of links, each stopped after the test.
    """
    made = Links(reactor)
    yield made
    for link in made.made:
        await within(link.stop())


@pytest.fixture
def own_server(store_server: StoreServer, tmp_path: Path) -> Any:
    """
    Starts servers of the kind C{store_server} is, for this test alone;
    stops them after it.
    """
    started: List[StoreServer] = []

    def start(**options: Any) -> StoreServer:
        directory = tmp_path / f"server{len(started)}"
        directory.mkdir()
        server = StoreServer(store_server.kind, store_server.binary, directory, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def run_id(server: StoreServer) -> str:
    info = server.command("INFO", "server").decode()
    [line] = [line for line in info.splitlines() if line.startswith("run_id:")]
    return line.split(":", 1)[1].strip()


@pytest_twisted.ensureDeferred
async def test_ready_and_execute(store_server: StoreServer, links: Links, logs: Logs) -> None:
    """
    The link gets ready, says so with the primary's identity, and sends
    commands; an error reply passes through unchanged.
    """
    identities: List[PrimaryIdentity] = []
    link = links(address(store_server.port), on_ready=identities.append)
    assert not link.ready
    link.start()
    identity = await within(link.when_ready())
    assert link.ready
    assert identities == [identity]
    assert identity.run_id == run_id(store_server)
    assert len(identity.replication_id) == 40
    assert identity.address == f"127.0.0.1:{store_server.port}"
    assert await link.execute("SET", "link-k", "v") == b"OK"
    assert await link.execute("GET", "link-k") == b"v"
    with pytest.raises(ReplyError, match="unknown command"):
        await link.execute("NOSUCHCOMMAND")
    [connected] = events(logs, "store connected")
    assert connected["run_id"] == identity.run_id
    assert connected["log_level"] == "info"
    assert connected["address"] == f"redis://127.0.0.1:{store_server.port}/0"


@pytest_twisted.ensureDeferred
async def test_execute_before_ready_fails_at_once(links: Links, logs: Logs) -> None:
    """
    A command sent before the link is ready fails at once with
    L{StoreUnavailable}, saying why: not started, not connected yet, the
    connection refused.
    """
    port = free_port()
    link = links(address(port))
    assert "not started" in str(failure_of(link.execute("PING"), StoreUnavailable).value)
    link.start()
    failure = failure_of(link.execute("PING"), StoreUnavailable)
    assert "not connected yet" in str(failure.value)
    await eventually(lambda: bool(events(logs, "store unavailable")))
    failure = failure_of(link.execute("PING"), StoreUnavailable)
    assert str(failure.value) == f"the store at 127.0.0.1:{port} is unreachable: connection refused"
    [down] = events(logs, "store unavailable")
    assert down["reason"] == str(failure.value)
    assert down["log_level"] == "warning"


@pytest_twisted.ensureDeferred
async def test_killed_and_restarted(own_server: Any, links: Links, logs: Logs) -> None:
    """
    A store killed fails the commands in flight with L{StoreUnavailable},
    is logged unavailable once however many retries fail, and once it
    restarts on the same port the link reconnects: C{store connected}
    again, C{on_ready} with the new run id.
    """
    server = own_server()
    identities: List[PrimaryIdentity] = []
    link = links(address(server.port), on_ready=identities.append)
    link.start()
    await within(link.when_ready())
    in_flight = [link.execute("BLPOP", "never", 0), link.execute("BLPOP", "never", 0)]
    server.kill()
    for each in in_flight:
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port} is unreachable"):
            await within(each)
    assert not link.ready
    failure_of(link.execute("PING"), StoreUnavailable)
    # Several retries fail (backoff 0.1, 0.2, 0.4, 0.5 s ...).
    await eventually(lambda: len(events(logs, "store still unavailable")) >= 3)
    assert len(events(logs, "store unavailable")) == 1
    server.restart()
    identity = await within(link.when_ready())
    assert await link.execute("PING") == b"PONG"
    assert [each.run_id for each in identities] == [identities[0].run_id, identity.run_id]
    assert identity.run_id != identities[0].run_id
    assert identity.run_id == run_id(server)
    assert len(events(logs, "store connected")) == 2
    assert len(events(logs, "store unavailable")) == 1


@pytest_twisted.ensureDeferred
async def test_frozen_store_times_out(own_server: Any, links: Links, logs: Logs) -> None:
    """
    A store that stops answering (SIGSTOP) fails the command with
    L{StoreUnavailable} after the command timeout and the connection is
    dropped; once it answers again the link is ready again.
    """
    server = own_server()
    link = links(address(server.port), command_timeout=0.4)
    link.start()
    await within(link.when_ready())
    server.pause()
    try:
        waiting = [link.execute("PING") for _ in range(3)]
        for each in waiting:
            with pytest.raises(StoreUnavailable, match=r"no reply within 0\.4 s"):
                await within(each)
        assert not link.ready
    finally:
        server.resume()
    await within(link.when_ready())
    assert await link.execute("PING") == b"PONG"
    [down] = events(logs, "store unavailable")
    assert "no reply within 0.4 s" in down["reason"]


@pytest_twisted.ensureDeferred
async def test_password(own_server: Any, links: Links, logs: Logs) -> None:
    """
    A store that requires a password: the link with it gets ready; without
    it, or with a wrong one, the link stays unready and logs why.
    """
    server = own_server(password="s3cret")
    good = links(address(server.port, password="s3cret"))
    good.start()
    await within(good.when_ready())
    assert await good.execute("PING") == b"PONG"
    without = links(address(server.port))
    without.start()
    await eventually(lambda: bool(events(logs, "store unavailable")))
    assert not without.ready
    [down] = events(logs, "store unavailable")
    assert "NOAUTH" in down["reason"]
    assert down["reason"].startswith(f"the store at 127.0.0.1:{server.port} refused ROLE")
    assert "NOAUTH" in str(failure_of(without.execute("PING"), StoreUnavailable).value)
    await without.stop()
    wrong = links(address(server.port, password="wrong"))
    wrong.start()
    await eventually(lambda: len(events(logs, "store unavailable")) == 2)
    reason = events(logs, "store unavailable")[1]["reason"]
    assert f"127.0.0.1:{server.port} refused AUTH" in reason
    assert "wrong" not in reason.replace("WRONGPASS", "")
    assert not wrong.ready


@pytest_twisted.ensureDeferred
async def test_username_and_password(own_server: Any, links: Links) -> None:
    """
    An ACL user logs in with its name and password.
    """
    server = own_server(password="admin")
    server.command("ACL", "SETUSER", "app", "on", ">apppass", "~*", "+@all")
    link = links(address(server.port, username="app", password="apppass"))
    link.start()
    await within(link.when_ready())
    assert await link.execute("ACL", "WHOAMI") == b"app"


@pytest_twisted.ensureDeferred
async def test_select_db(store_server: StoreServer, links: Links) -> None:
    """
    Keys land in the address's database.
    """
    store_server.command("FLUSHALL")
    link = links(address(store_server.port, db=3))
    link.start()
    await within(link.when_ready())
    assert await link.execute("SET", "in-db-3", "yes") == b"OK"
    script = "redis.call('SELECT', ARGV[1]); return redis.call('GET', KEYS[1])"
    assert store_server.value("EVAL", script, "1", "in-db-3", "3") == b"yes"
    assert store_server.value("EXISTS", "in-db-3") == 0


@pytest_twisted.ensureDeferred
async def test_messages_and_sync(store_server: StoreServer, links: Links) -> None:
    """
    Messages published on the channel (from another connection, or the
    link's own) go to C{on_message} in order; after C{sync()} every one
    published before it has come.
    """
    messages: List[bytes] = []
    link = links(address(store_server.port), channel=b"link-ch", on_message=messages.append)
    link.start()
    await within(link.when_ready())
    assert store_server.value("PUBLISH", "link-ch", "from outside") == 1
    store_server.command("PUBLISH", "other-ch", "not ours")
    await within(link.sync())
    assert messages == [b"from outside"]
    published = [link.execute("PUBLISH", "link-ch", str(n)) for n in range(500)]
    for each in published:
        assert await each == 1
    await within(link.sync())
    assert messages[1:] == [str(n).encode() for n in range(500)]
    assert await link.execute("PING") == b"PONG"


@pytest_twisted.ensureDeferred
async def test_sync_and_execute_not_ready(links: Links) -> None:
    """
    C{sync} fails at once when the link is not ready; a link without a
    channel has no C{sync}.
    """
    link = links(address(free_port()), channel=b"c")
    failure_of(link.sync(), StoreUnavailable)
    with pytest.raises(RuntimeError, match="no channel"):
        links(address(free_port())).sync()


@pytest_twisted.ensureDeferred
async def test_on_ready_holds_readiness(store_server: StoreServer, links: Links) -> None:
    """
    The link is ready only once C{on_ready}'s Deferred fires; meanwhile
    L{StoreLink.execute_connected} reaches the store and L{execute} fails.
    """
    holding: List[Deferred[None]] = []

    def on_ready(identity: PrimaryIdentity) -> Deferred[None]:
        holding.append(Deferred())
        return holding[-1]

    link = links(address(store_server.port), on_ready=on_ready)
    link.start()
    await eventually(lambda: bool(holding))
    assert not link.ready
    failure_of(link.execute("PING"), StoreUnavailable)
    assert await within(link.execute_connected("PING")) == b"PONG"
    holding[0].callback(None)
    assert link.ready
    assert await link.execute("PING") == b"PONG"


@pytest_twisted.ensureDeferred
async def test_stop_fails_waiting(store_server: StoreServer, links: Links) -> None:
    """
    Stopping fails the commands in flight and the ready waiters with
    L{StoreUnavailable}, and later commands at once.
    """
    link = links(address(store_server.port))
    link.start()
    await within(link.when_ready())
    waiting = link.execute("BLPOP", "never", 0)
    await within(link.stop())
    with pytest.raises(StoreUnavailable, match="stopped"):
        await waiting
    assert "stopped" in str(failure_of(link.execute("PING"), StoreUnavailable).value)
    elsewhere = links(address(free_port()))
    elsewhere.start()
    ready = elsewhere.when_ready()
    await within(elsewhere.stop())
    failure_of(ready, StoreUnavailable)


@pytest_twisted.ensureDeferred
async def test_sentinel_failover(
    store_server: StoreServer, links: Links, logs: Logs, tmp_path: Path
) -> None:
    """
    Through Sentinel, the link finds the primary; when the primary dies and
    the sentinels promote the replica, the link follows: C{on_ready} with
    the new primary's identity, commands go to it, and it is a primary.
    """
    group = SentinelGroup(store_server.kind, store_server.binary, tmp_path)
    try:
        assert group.replica is not None
        identities: List[PrimaryIdentity] = []
        where = StoreAddress(
            "sentinel",
            (("127.0.0.1", free_port()), *group.hosts),  # the first sentinel is down
            primary_name=group.name,
        )
        messages: List[bytes] = []
        link = links(
            where, channel=b"events", on_message=messages.append, on_ready=identities.append
        )
        link.start()
        first = await within(link.when_ready())
        assert first.port == group.primary.port
        assert await link.execute("SET", "before", "1") == b"OK"
        group.primary.kill()
        await eventually(lambda: len(identities) == 2 and link.ready, seconds=45)
        second: Optional[PrimaryIdentity] = identities[1]
        assert second is not None
        assert second.port == group.replica.port
        assert second.run_id != first.run_id
        assert second.replication_id != first.replication_id
        role = await within(link.execute("ROLE"))
        assert role[0] == b"master"
        assert await link.execute("SET", "after", "2") == b"OK"
        assert group.replica.value("GET", "after") == b"2"
        assert await link.execute("PUBLISH", "events", "hello") == 1
        await within(link.sync())
        assert messages == [b"hello"]
        [changed] = events(logs, "store primary changed")
        assert changed["new"] == f"127.0.0.1:{group.replica.port}"
        assert changed["old"] == f"127.0.0.1:{group.primary.port}"
        assert len(events(logs, "store connected")) == 2
    finally:
        group.stop()


@pytest_twisted.ensureDeferred
async def test_no_sentinel_answers(links: Links, logs: Logs) -> None:
    """
    When no sentinel can be reached, the link is not ready and says why,
    naming each sentinel.
    """
    ports = [free_port(), free_port()]
    where = StoreAddress(
        "sentinel", tuple(("127.0.0.1", port) for port in ports), primary_name="mymaster"
    )
    link = links(where)
    link.start()
    await eventually(lambda: bool(events(logs, "store unavailable")))
    reason = str(failure_of(link.execute("PING"), StoreUnavailable).value)
    assert reason.startswith(f"the store at {where.display} is unreachable: no sentinel named")
    for port in ports:
        assert f"127.0.0.1:{port} is unreachable: connection refused" in reason
    assert events(logs, "store sentinel unavailable")


@TLS_CLIENT_WARNINGS[0]
@TLS_CLIENT_WARNINGS[1]
@pytest_twisted.ensureDeferred
async def test_tls(own_server: Any, links: Links, tmp_path: Path) -> None:
    """
    Over TLS (rediss://), the link trusts the CA it is given.
    """
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    ca, chain, key = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    certificate.private_key_pem.write_to_path(str(key))
    for blob in certificate.cert_chain_pems:
        blob.write_to_path(str(chain), append=True)
    tls_port = free_port()
    try:
        own_server(
            extra=[
                "--tls-port",
                str(tls_port),
                "--tls-cert-file",
                str(chain),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(ca),
                "--tls-auth-clients",
                "no",
            ]
        )
    except RuntimeError:
        pytest.skip("this server has no TLS")
    link = links(address(tls_port, tls=True), ca_path=str(ca))
    link.start()
    await within(link.when_ready())
    assert await link.execute("PING") == b"PONG"
