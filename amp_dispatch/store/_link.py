"""
The link to the shared store's primary: L{StoreLink} keeps a command
connection (and, given a channel, a subscriber connection) to the Redis or
Valkey server that is the primary up, reconnecting with backoff for as long
as it runs, and finds the primary through Sentinel when the address says so.

A command sent while the link is not ready fails at once with
L{StoreUnavailable}, saying why; so does a command in flight when its
connection drops, or one the store leaves unanswered for C{command_timeout}
(the connection is then dropped and made again).  The ready path costs one
attribute check on top of L{RedisProtocol.execute}: the command timeout is
a watchdog, one timer for the whole link, that checks every quarter of
C{command_timeout} whether the oldest command waiting on each connection is
the one it saw there before, and drops the connection once the same one has
waited C{command_timeout} (so a command fails after between
C{command_timeout} and 1.25 times it, never before; after a stall of the
reactor, not before replies already come had a turn to be read).  It also
pings the sentinel the link listens to, so a sentinel that stops answering
is left for the next one.

Logged once per change of state (logger C{amp_dispatch.store}): C{store
connected}, C{store unavailable} (not once per retry), C{store primary
changed} (Sentinel named another primary); never a traceback for a
connection problem.
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from amp_dispatch_commands import StoreUnavailable
from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from .._log import get_logger
from ._address import Host, StoreAddress, show_host
from ._redis import RedisProtocol, RedisSubscriber
from ._resp import ReplyError, Value, make_reader

_log = get_logger("amp_dispatch.store")

#: The Sentinel channel announcing a new primary:
#: C{"<name> <old-ip> <old-port> <new-ip> <new-port>"}.
SWITCH_MASTER = b"+switch-master"

P = TypeVar("P", bound=RedisProtocol)

#: What the watchdog saw on a connection: the oldest waiting command's
#: Deferred (or None) and when it first saw it there.
_Seen = Tuple[Optional[object], float]
_IDLE: _Seen = (None, 0.0)


@frozen
class PrimaryIdentity:
    """
    Which server the link reached as the primary: its C{run_id} (new at
    each start of the server) and C{replication_id} (new when it became a
    primary), and where it is.
    """

    run_id: str
    replication_id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """
        C{host:port}.
        """
        return show_host((self.host, self.port))


class _NotReady(Exception):
    """
    One attempt to make the link ready failed; the message says where and
    why.
    """


class _Superseded(Exception):
    """
    The attempt was abandoned (the link stopped, or went another way).
    """


def _ignore_message(data: bytes) -> None:
    pass


def _nothing_to_do(identity: PrimaryIdentity) -> None:
    pass


def _connect_reason(failure: Failure, timeout: float) -> str:
    """
    Why a connection could not be made, in a few words (no traceback).
    """
    if failure.check(ConnectionRefusedError):
        return "connection refused"
    if failure.check(ConnectTimeoutError, DeferredTimeoutError):
        return f"no connection within {timeout:g} s"
    if failure.check(DNSLookupError):
        return "host name not found"
    return failure.getErrorMessage()


def _prefixed(where: str) -> Callable[[str], Exception]:
    """
    The errors of a sentinel connection's commands: what failed, where.
    """

    def lost_error(reason: str) -> Exception:
        return _NotReady(f"{where}: {reason}")

    return lost_error


def _info_field(info: bytes, key: str) -> str:
    """
    One field of an C{INFO} reply (C{""} if it has none).
    """
    prefix = key.encode("ascii") + b":"
    for line in info.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].decode("utf-8", "replace").strip()
    return ""


def _role(reply: Any) -> str:
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].decode("utf-8", "replace")
    return repr(reply)


class StoreLink:
    """
    A reconnecting link to the store's primary.

    @param reactor: connects, and is the clock of timeouts and backoff.
    @param address: where the store is (one server, or sentinels).
    @param channel: if given, a second connection subscribes to it and
        C{on_message} gets each message's data.
    @param on_message: called with the data of each message on C{channel}.
    @param on_ready: called with the primary's identity each time both
        connections are up (and subscribed); the link is ready once the
        Deferred it returns, if any, fires.  While it runs, commands go out
        with L{execute_connected}.  If it fails, the link drops the
        connections and tries again.
    @param command_timeout: seconds a command may wait for its reply.
    @param connect_timeout: seconds a connection may take to be made.
    @param backoff_initial: seconds before the first retry; each further
        retry waits C{backoff_factor} times more, up to C{backoff_max}, each
        delay cut by up to half at random (C{random}).
    @param random: a source of floats in [0, 1) for the backoff's jitter.
    @param ca_path: over TLS, a PEM file of the CA certificates to trust
        (read once, here) instead of the platform's.
    @param endpoint_factory: makes the endpoint of a C{(host, port)}
        (default: a L{HostnameEndpoint}, wrapped in TLS if the address says
        so).
    @param reader: makes each connection's reply reader.
    """

    def __init__(
        self,
        reactor: Any,
        address: StoreAddress,
        *,
        channel: Optional[bytes] = None,
        on_message: Callable[[bytes], object] = _ignore_message,
        on_ready: Callable[[PrimaryIdentity], Optional[Deferred[Any]]] = _nothing_to_do,
        command_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        backoff_initial: float = 0.1,
        backoff_factor: float = 2.0,
        backoff_max: float = 5.0,
        random: Callable[[], float] = _random.random,
        ca_path: Optional[str] = None,
        endpoint_factory: Optional[Callable[[str, int], IStreamClientEndpoint]] = None,
        reader: Callable[[], Any] = make_reader,
    ) -> None:
        if address.kind == "sentinel" and not address.primary_name:
            raise ValueError("a sentinel address needs the primary's name")
        if command_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self._reactor = reactor
        self._address = address
        self._channel = channel
        self._on_message = on_message
        self._on_ready = on_ready
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._backoff = (backoff_initial, backoff_factor, backoff_max)
        self._random = random
        self._reader = reader
        self._tls_trust: Any = None
        if address.tls and ca_path is not None and endpoint_factory is None:
            from twisted.internet.ssl import Certificate

            with open(ca_path, "rb") as pem:
                self._tls_trust = Certificate.loadPEM(pem.read())
        self._endpoint_factory = endpoint_factory or self._default_endpoint

        self._running = False
        # Bumped whenever what is under way is abandoned: an attempt that
        # sees another epoch than its own stops.
        self._epoch = 0
        # The command connection: ready, or verified and in on_ready.
        self._command: Optional[RedisProtocol] = None
        self._subscriber: Optional[RedisSubscriber] = None
        # The command connection once ready: the one attribute execute checks.
        self._ready: Optional[RedisProtocol] = None
        self._identity: Optional[PrimaryIdentity] = None
        # Why the link is not ready (what execute fails with).
        self._why = "the store link is not started"
        # Connections and connection attempts of the current epoch.
        self._opened: List[RedisProtocol] = []
        self._connecting: List[Deferred[Any]] = []
        self._retry: Optional[IDelayedCall] = None
        self._failures = 0
        self._down_logged = False
        # The primary last connected to or announced, and where to go next
        # instead of asking the sentinels.
        self._primary: Optional[Host] = None
        self._hint: Optional[Host] = None
        self._waiters: List[Deferred[PrimaryIdentity]] = []
        self._stopped: List[Deferred[None]] = []
        # Every connection made and not yet lost, for the watchdog.
        self._watched: Dict[RedisProtocol, _Seen] = {}
        self._watchdog = LoopingCall(self._watch)
        self._last_watch = 0.0
        self._watchdog.clock = reactor
        # The sentinel connection listening for +switch-master.
        self._sentinel: Optional[RedisSubscriber] = None
        self._sentinel_index = 0
        self._sentinel_connecting: Optional[Deferred[Any]] = None
        self._sentinel_retry: Optional[IDelayedCall] = None
        self._sentinel_failures = 0
        self._sentinel_down_logged = False

    # The public face.

    @property
    def ready(self) -> bool:
        """
        Whether commands go to the store (both connections up, on_ready
        done).
        """
        return self._ready is not None

    @property
    def identity(self) -> Optional[PrimaryIdentity]:
        """
        The primary the link is (or was last) connected to.
        """
        return self._identity

    def execute(self, *arguments: Value) -> Deferred[Any]:
        """
        Send one command to the primary: its reply, an error reply as
        L{ReplyError}, or L{StoreUnavailable} (at once if the link is not
        ready; if the connection drops, or the reply does not come within
        C{command_timeout}).
        """
        command = self._ready
        if command is None:
            return fail(StoreUnavailable(self._why))
        return command.execute(*arguments)

    def send(self, command: bytes) -> Deferred[Any]:
        """
        L{execute} of a command encoded already (see L{encode_command}).
        """
        ready = self._ready
        if ready is None:
            return fail(StoreUnavailable(self._why))
        return ready.send(command)

    def send_then(self, command: bytes, sink: Callable[[Any], object]) -> None:
        """
        L{send}, the reply given to C{sink} (see L{RedisProtocol.send_then};
        C{StoreUnavailable} at once if the link is not ready).
        """
        ready = self._ready
        if ready is None:
            sink(StoreUnavailable(self._why))
        else:
            ready.send_then(command, sink)

    def send_connected(self, command: bytes) -> Deferred[Any]:
        """
        L{send}, also while C{on_ready} runs (see L{execute_connected}).
        """
        command_connection = self._command
        if command_connection is None:
            return fail(StoreUnavailable(self._why))
        return command_connection.send(command)

    def execute_connected(self, *arguments: Value) -> Deferred[Any]:
        """
        L{execute}, also while C{on_ready} runs (the connection is up to a
        verified primary, but the link is not ready yet).
        """
        command = self._command
        if command is None:
            return fail(StoreUnavailable(self._why))
        return command.execute(*arguments)

    def sync(self) -> Deferred[None]:
        """
        Fires once every message published on the channel before the store
        ran this call went to C{on_message} (a C{PING} on the subscriber
        connection, whose reply comes after them).
        """
        if self._channel is None:
            raise RuntimeError("the store link subscribes to no channel")
        subscriber = self._subscriber
        if self._ready is None or subscriber is None:
            return fail(StoreUnavailable(self._why))
        return subscriber.execute("PING").addCallback(lambda _: None)

    def when_ready(self) -> Deferred[PrimaryIdentity]:
        """
        Fires with the primary's identity when the link is next ready (at
        once if it is); fails with L{StoreUnavailable} if the link stops
        first.
        """
        if self._ready is not None and self._identity is not None:
            return succeed(self._identity)
        waiter: Deferred[PrimaryIdentity] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def start(self) -> None:
        """
        Begin connecting (and keep the link up until L{stop}).
        """
        if self._running:
            return
        self._running = True
        self._why = f"the store at {self._address.display} is unreachable: not connected yet"
        self._last_watch = self._reactor.seconds()
        self._watchdog.start(self._command_timeout / 4, now=False)
        if self._address.kind == "sentinel":
            self._watch_sentinels()
        self._attempt()

    def stop(self) -> Deferred[None]:
        """
        Close every connection and stop every timer; commands waiting fail
        with L{StoreUnavailable}.  Fires once the connections are closed.
        """
        self._running = False
        reason = "the store link stopped"
        self._abandon(reason)
        self._why = f"the store at {self._address.display} is unreachable: {reason}"
        for call in (self._retry, self._sentinel_retry):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._sentinel_retry = None
        if self._watchdog.running:
            self._watchdog.stop()
        if self._sentinel_connecting is not None:
            self._sentinel_connecting.cancel()
        if self._sentinel is not None:
            self._sentinel.drop(reason)
            self._sentinel = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(StoreUnavailable(self._why))
        if not self._watched:
            return succeed(None)
        stopped: Deferred[None] = Deferred()
        self._stopped.append(stopped)
        return stopped

    # Making the link ready.

    def _attempt(self) -> None:
        self._retry = None
        if not self._running:
            return
        epoch = self._epoch
        attempt = Deferred.fromCoroutine(self._establish(epoch))
        attempt.addErrback(self._attempt_failed, epoch)

    def _attempt_failed(self, failure: Failure, epoch: int) -> None:
        if epoch != self._epoch or not self._running:
            return
        if failure.check(_NotReady, StoreUnavailable):
            why = str(failure.value)
        else:
            # Not a connection problem: a failing on_ready, or a bug.
            why = f"the store's set-up failed: {failure.getErrorMessage()}"
            _log.error(
                "store set-up failed",
                address=self._address.display,
                error=failure.getErrorMessage(),
                error_type=type(failure.value).__name__,
            )
        self._went_down(why)

    async def _establish(self, epoch: int) -> None:
        if self._address.kind == "sentinel":
            host = await self._discover(epoch)
        else:
            host = self._address.hosts[0]
        where = show_host(host)
        command = await self._open(epoch, host, RedisProtocol(self._reader, **self._hooks(where)))
        replies = await self._pipeline(
            where, command, [("ROLE",), ("INFO", "server"), ("INFO", "replication")]
        )
        self._check(epoch)
        role = _role(replies[0])
        if role not in ("master", "primary"):
            raise _NotReady(f"the store at {where} is not the primary (its role is {role})")
        identity = PrimaryIdentity(
            run_id=_info_field(replies[1], "run_id"),
            replication_id=_info_field(replies[2], "master_replid"),
            host=host[0],
            port=host[1],
        )
        self._command = command
        subscriber: Optional[RedisSubscriber] = None
        if self._channel is not None:
            subscriber = RedisSubscriber(self._deliver, self._reader, **self._hooks(where))
            await self._open(epoch, host, subscriber)
            await self._pipeline(where, subscriber, [("SUBSCRIBE", self._channel)])
            self._check(epoch)
            self._subscriber = subscriber
        if self._primary is not None and self._primary != host:
            _log.warning(
                "store primary changed",
                address=self._address.display,
                old=show_host(self._primary),
                new=where,
            )
        self._primary = host
        self._identity = identity
        setup = self._on_ready(identity)
        if isinstance(setup, Deferred):
            await setup
        self._check(epoch)
        self._ready = command
        self._failures = 0
        self._down_logged = False
        _log.info(
            "store connected",
            address=self._address.display,
            primary=where,
            run_id=identity.run_id,
            replication_id=identity.replication_id,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(identity)

    def _hooks(self, where: str) -> Dict[str, Any]:
        """
        The errors and loss callback of a connection to the primary at
        C{where}.
        """

        def lost_error(reason: str) -> Exception:
            return StoreUnavailable(f"the store at {where} is unreachable: {reason}")

        def on_lost(protocol: RedisProtocol, reason: str) -> None:
            self._unwatch(protocol)
            if protocol in self._opened:
                self._went_down(f"the store at {where} is unreachable: {reason}")

        return {"lost_error": lost_error, "on_lost": on_lost}

    def _check(self, epoch: int) -> None:
        if epoch != self._epoch or not self._running:
            raise _Superseded()

    async def _open(self, epoch: int, host: Host, protocol: P, login: bool = True) -> P:
        """
        Connect C{protocol} to C{host}, within the connect timeout, and (if
        C{login}) log in: C{AUTH}, C{SELECT}.
        """
        self._check(epoch)
        connecting = connectProtocol(self._endpoint_factory(*host), protocol)
        connecting.addTimeout(self._connect_timeout, self._reactor)
        self._connecting.append(connecting)
        try:
            await connecting
        except CancelledError:
            raise _Superseded() from None
        except Exception:
            if epoch == self._epoch:
                reason = _connect_reason(Failure(), self._connect_timeout)
                raise _NotReady(
                    f"the store at {show_host(host)} is unreachable: {reason}"
                ) from None
            raise _Superseded() from None
        finally:
            if connecting in self._connecting:
                self._connecting.remove(connecting)
        self._watched[protocol] = _IDLE
        if epoch != self._epoch or not self._running:
            protocol.drop("the attempt was abandoned")
            raise _Superseded()
        self._opened.append(protocol)
        commands: List[Tuple[Value, ...]] = []
        address = self._address
        if login and address.password is not None:
            if address.username is not None:
                commands.append(("AUTH", address.username, address.password))
            else:
                commands.append(("AUTH", address.password))
        if login and address.db:
            commands.append(("SELECT", address.db))
        if commands:
            await self._pipeline(show_host(host), protocol, commands)
        return protocol

    async def _pipeline(
        self, where: str, protocol: RedisProtocol, commands: Sequence[Tuple[Value, ...]]
    ) -> List[Any]:
        """
        Send C{commands} at once and return their replies; the first error
        reply fails the attempt, naming the command.
        """
        sent = [protocol.execute(*command) for command in commands]
        replies: List[Any] = []
        failed: Optional[BaseException] = None
        for command, reply in zip(commands, sent):
            try:
                replies.append(await reply)
            except ReplyError as e:
                if failed is None:
                    name = str(command[0]).upper()
                    failed = _NotReady(f"the store at {where} refused {name}: {e}")
            except Exception as e:
                if failed is None:
                    failed = e
        if failed is not None:
            raise failed
        return replies

    def _went_down(self, why: str) -> None:
        """
        The current attempt or the ready link failed: close what is open,
        say so once, and try again after the backoff.
        """
        self._abandon(why)
        self._why = why
        if not self._down_logged:
            self._down_logged = True
            _log.warning("store unavailable", address=self._address.display, reason=why)
        else:
            _log.debug("store still unavailable", address=self._address.display, reason=why)
        if self._running and self._retry is None:
            initial, factor, most = self._backoff
            delay = min(most, initial * factor ** min(self._failures, 64))
            delay *= 1.0 - self._random() / 2
            self._failures += 1
            self._retry = self._reactor.callLater(delay, self._attempt)

    def _abandon(self, reason: str) -> None:
        """
        Stop what is under way: drop its connections (their commands fail
        saying C{reason}) and cancel its connection attempts.
        """
        self._epoch += 1
        self._ready = self._command = self._subscriber = None
        opened, self._opened = self._opened, []
        connecting, self._connecting = self._connecting, []
        for protocol in opened:
            protocol.drop(reason)
        for attempt in connecting:
            attempt.cancel()

    def _deliver(self, channel: bytes, data: bytes) -> None:
        try:
            self._on_message(data)
        except Exception:
            _log.exception("store message handler failed", channel=channel)

    # The command timeout.

    def _watch(self) -> None:
        """
        Drop each connection whose oldest waiting command has waited
        C{command_timeout}.
        """
        now = self._reactor.seconds()
        limit = self._command_timeout
        # After a reactor stall, replies may be waiting unread: judge at the
        # next tick, once they had a turn.
        stalled = now - self._last_watch > limit / 2
        self._last_watch = now
        watched = self._watched
        for protocol, (seen, since) in list(watched.items()):
            oldest = protocol.oldest()
            if oldest is None:
                if seen is not None:
                    watched[protocol] = _IDLE
            elif oldest is not seen:
                watched[protocol] = (oldest, now)
            elif now - since >= limit and not stalled:
                protocol.drop(f"no reply within {limit:g} s")
        sentinel = self._sentinel
        if sentinel is not None and sentinel.oldest() is None:
            # A sentinel that stops answering is left for the next one.
            sentinel.execute("PING").addErrback(lambda _: None)

    def _forget(self, protocol: RedisProtocol, reason: str) -> None:
        self._unwatch(protocol)

    def _unwatch(self, protocol: RedisProtocol) -> None:
        self._watched.pop(protocol, None)
        if not self._watched and self._stopped:
            stopped, self._stopped = self._stopped, []
            for each in stopped:
                each.callback(None)

    # Sentinel.

    async def _discover(self, epoch: int) -> Host:
        """
        The primary's address: the one a switch announced, else the first
        answer of the sentinels, asked in turn.
        """
        if self._hint is not None:
            hint, self._hint = self._hint, None
            return hint
        name = self._address.primary_name
        reasons: List[str] = []
        for sentinel in self._address.hosts:
            where = show_host(sentinel)
            protocol = RedisProtocol(
                self._reader, lost_error=_prefixed(where), on_lost=self._forget
            )
            try:
                await self._open(epoch, sentinel, protocol, login=False)
                reply = await protocol.execute("SENTINEL", "get-master-addr-by-name", name or "")
            except _NotReady as e:
                reasons.append(str(e))
                continue
            except ReplyError as e:
                reasons.append(f"{where}: {e}")
                continue
            finally:
                if protocol in self._opened:
                    self._opened.remove(protocol)
                    protocol.drop("asked")
            self._check(epoch)
            if isinstance(reply, list) and len(reply) == 2:
                try:
                    return reply[0].decode("utf-8"), int(reply[1])
                except (AttributeError, UnicodeDecodeError, ValueError):
                    pass
            reasons.append(f"{where}: does not know the primary {name!r}")
        raise _NotReady(
            f"the store at {self._address.display} is unreachable:"
            f" no sentinel named the primary ({'; '.join(reasons)})"
        )

    def _watch_sentinels(self) -> None:
        self._sentinel_retry = None
        if not self._running:
            return
        hosts = self._address.hosts
        sentinel = hosts[self._sentinel_index % len(hosts)]
        watching = Deferred.fromCoroutine(self._subscribe_sentinel(sentinel))
        watching.addErrback(self._sentinel_failed, sentinel)

    async def _subscribe_sentinel(self, sentinel: Host) -> None:
        protocol = RedisSubscriber(
            self._switch_message,
            self._reader,
            on_lost=lambda protocol, reason: self._sentinel_lost(protocol, sentinel, reason),
        )
        connecting = connectProtocol(self._endpoint_factory(*sentinel), protocol)
        connecting.addTimeout(self._connect_timeout, self._reactor)
        self._sentinel_connecting = connecting
        try:
            await connecting
        except Exception:
            if not self._running:
                raise _Superseded() from None
            reason = _connect_reason(Failure(), self._connect_timeout)
            raise _NotReady(reason) from None
        finally:
            self._sentinel_connecting = None
        self._watched[protocol] = _IDLE
        if not self._running:
            protocol.drop("the store link stopped")
            raise _Superseded()
        self._sentinel = protocol
        reply = await protocol.execute("SUBSCRIBE", SWITCH_MASTER)
        if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
            protocol.drop("unexpected reply")
            raise _NotReady(f"SUBSCRIBE answered {reply!r}")
        self._sentinel_failures = 0
        if self._sentinel_down_logged:
            self._sentinel_down_logged = False
            _log.info("store sentinel connected", sentinel=show_host(sentinel))

    def _sentinel_failed(self, failure: Failure, sentinel: Host) -> None:
        if failure.check(_Superseded) or not self._running:
            return
        if self._sentinel is not None:
            # Connected, then refused: the loss callback takes it from there.
            self._sentinel.drop(failure.getErrorMessage())
            return
        self._sentinel_down(sentinel, failure.getErrorMessage())

    def _sentinel_lost(self, protocol: RedisProtocol, sentinel: Host, reason: str) -> None:
        self._unwatch(protocol)
        if protocol is self._sentinel:
            self._sentinel = None
            self._sentinel_down(sentinel, reason)

    def _sentinel_down(self, sentinel: Host, reason: str) -> None:
        """
        Lost (or could not reach) a sentinel: go to the next one, after the
        backoff.
        """
        if not self._running:
            return
        if not self._sentinel_down_logged:
            self._sentinel_down_logged = True
            _log.warning("store sentinel unavailable", sentinel=show_host(sentinel), reason=reason)
        self._sentinel_index += 1
        initial, factor, most = self._backoff
        delay = min(most, initial * factor ** min(self._sentinel_failures, 64))
        delay *= 1.0 - self._random() / 2
        self._sentinel_failures += 1
        self._sentinel_retry = self._reactor.callLater(delay, self._watch_sentinels)

    def _switch_message(self, channel: bytes, data: bytes) -> None:
        """
        A sentinel announced a new primary: if ours, go there now.
        """
        fields = data.split()
        if len(fields) != 5 or not self._running:
            return
        name = fields[0].decode("utf-8", "replace")
        if name != self._address.primary_name:
            return
        try:
            new = (fields[3].decode("utf-8"), int(fields[4]))
        except (UnicodeDecodeError, ValueError):
            return
        if new == self._primary and self._ready is not None:
            return
        _log.warning(
            "store primary changed",
            address=self._address.display,
            old=show_host(self._primary) if self._primary is not None else None,
            new=show_host(new),
        )
        self._primary = new
        self._hint = new
        self._abandon(f"the primary changed to {show_host(new)}")
        self._why = f"the store at {show_host(new)} is unreachable: not connected yet"
        self._down_logged = False
        self._failures = 0
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._attempt()

    # Endpoints.

    def _default_endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, host, port, timeout=self._connect_timeout
        )
        if self._address.tls:
            from twisted.internet.ssl import optionsForClientTLS

            options = optionsForClientTLS(host, trustRoot=self._tls_trust)
            endpoint = wrapClientTLS(options, endpoint)
        return endpoint


__all__ = ["SWITCH_MASTER", "PrimaryIdentity", "StoreLink"]
