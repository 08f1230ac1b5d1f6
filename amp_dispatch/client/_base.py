"""
L{DispatcherClient}, what both clients have: a kept-up connection to one
listener, C{start}, C{stop}, C{stats}, and use as an async context manager.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from amp_dispatch_commands import Stats
from twisted.internet.defer import Deferred
from twisted.protocols import amp

from ._connection import DispatcherConnection, Endpoint
from ._defaults import CLIENT_CALL_TIMEOUT, CLIENT_KEEPALIVE, CLIENT_MAX_BOX_BYTES
from ._records import DispatcherStats

_SelfClient = TypeVar("_SelfClient", bound="DispatcherClient")


class DispatcherClient:
    """
    What both clients have: a kept-up connection to one listener, L{start},
    L{stop}, L{stats}, and use as an async context manager (started on entry,
    stopped on exit).

    @param reactor: the reactor to connect with and time calls by.
    @param endpoint: the listener: a Twisted client endpoint string, e.g.
        C{"tcp:127.0.0.1:8750"}, or an object providing
        L{IStreamClientEndpoint} (messages name it by its C{str()}); or a
        list of them, the listener on replicas of a dispatcher sharing a
        store: each connection goes to the first that accepts, starting
        with the one that last did, so a replica's death costs one
        reconnect (see L{FailoverEndpoint}).
    @param call_timeout: seconds a call may take, connecting included.
    @param fail_after_failures: until the client has connected once, a
        failed connection attempt (every endpoint of a list tried once) fails
        the calls waiting for it, and a call made after it fails at once,
        with L{DispatcherUnavailable} carrying the cause.  Once it has
        connected, calls wait through an outage for the reconnection up to
        their timeout; with this given, they fail as soon as that many
        attempts in a row failed while they waited.
    @param retry_policy: seconds to wait before reconnect attempt N; default
        C{twisted.application.internet.backoffPolicy()}.
    @param max_box_bytes: the longest box accepted from the dispatcher (a
        longer one drops the connection); default 128 KiB.
    @param keepalive: seconds without a call after which a C{Stats} goes out,
        so the dispatcher's idle timeout keeps the connection (0: never);
        default 60.
    """

    _role: str = ""

    def __init__(
        self,
        reactor: Any,
        endpoint: Endpoint,
        *,
        call_timeout: float = CLIENT_CALL_TIMEOUT,
        fail_after_failures: Optional[int] = None,
        retry_policy: Optional[Callable[[int], float]] = None,
        max_box_bytes: int = CLIENT_MAX_BOX_BYTES,
        keepalive: float = CLIENT_KEEPALIVE,
    ) -> None:
        self._reactor = reactor
        self._connection = DispatcherConnection(
            reactor,
            endpoint,
            role=self._role,
            call_timeout=call_timeout,
            fail_after_failures=fail_after_failures,
            on_connect=self._connected,
            retry_policy=retry_policy,
            max_box_bytes=max_box_bytes,
            keepalive=keepalive,
        )

    @property
    def endpoint(self) -> str:
        """
        Where this client connects: its endpoint string, or its endpoint
        object's C{str()}.
        """
        return self._connection.endpoint

    def start(self) -> None:
        """
        Start keeping a connection up.  Calls wait for the first
        connection; a call made before C{start} fails at once with
        L{DispatcherUnavailable}.
        """
        self._connection.start()

    def stop(self) -> Deferred[None]:
        """
        Stop reconnecting and close the connection.

        @return: fires once it is closed.
        """
        return self._connection.stop()

    async def __aenter__(self: _SelfClient) -> _SelfClient:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def stats(self) -> Deferred[DispatcherStats]:
        """
        The dispatcher's counters.
        """
        answered = self._connection.call(Stats, {})
        return answered.addCallback(lambda answer: DispatcherStats(**answer))

    def _connected(self, protocol: amp.AMP) -> None:
        """
        A new connection is up; nothing has been sent on it yet.
        """


__all__ = ["DispatcherClient"]
