"""
Tests for L{amp_dispatch.protocol._addresses}: addresses in logs, and C{TCP_NODELAY}
on the listeners' connections.
"""

from __future__ import annotations

from typing import List

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from amp_dispatch.protocol._addresses import describe, host_port, no_delay
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._stores import open_memory_store


@implementer(ITCPTransport)
class TCPTransport(StringTransport):
    """
    A string transport that records C{setTcpNoDelay} calls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.no_delay: List[bool] = []

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay.append(enabled)

    def getTcpNoDelay(self) -> bool:
        return bool(self.no_delay and self.no_delay[-1])

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def loseWriteConnection(self) -> None:
        pass


def test_describe_ipv4() -> None:
    """
    An IPv4 address reads C{host:port}.
    """
    assert describe(IPv4Address("TCP", "127.0.0.1", 8750)) == "127.0.0.1:8750"


def test_describe_ipv6() -> None:
    """
    An IPv6 address reads C{[host]:port}.
    """
    assert describe(IPv6Address("TCP", "::1", 8750)) == "[::1]:8750"


def test_describe_unix() -> None:
    """
    A Unix socket reads as its path, or C{unix} for an unnamed peer.
    """
    assert describe(UNIXAddress(b"/run/d.sock")) == "/run/d.sock"
    assert describe(UNIXAddress(None)) == "unix"
    assert host_port(UNIXAddress(b"/run/d.sock")) == ("/run/d.sock", 0)


def test_no_delay_on_tcp() -> None:
    """
    L{no_delay} turns Nagle's algorithm off on a TCP transport and leaves
    other transports alone.
    """
    tcp = TCPTransport()
    no_delay(tcp)
    assert tcp.no_delay == [True]
    no_delay(StringTransport())  # no setTcpNoDelay: nothing to do, no error


def test_listeners_set_no_delay() -> None:
    """
    Both listeners' connections send small answers at once.
    """
    clock = Clock()
    for listener in build_listeners(open_memory_store(clock), clock):
        factory = listener.factory
        transport = TCPTransport()
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        protocol.makeConnection(transport)
        assert transport.no_delay == [True]


def test_client_sets_no_delay() -> None:
    """
    The clients' connections send small calls at once too.
    """
    from twisted.internet.testing import MemoryReactorClock

    from amp_dispatch.client._connection import DispatcherConnection, _ClientFactory

    connection = DispatcherConnection(MemoryReactorClock(), "tcp:127.0.0.1:8750", role="frontend")
    transport = TCPTransport()
    protocol = _ClientFactory(connection).buildProtocol(None)
    protocol.makeConnection(transport)
    assert transport.no_delay == [True]
