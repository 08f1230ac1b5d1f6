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
        Start keeping a connection up (calls made before wait for it).
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
