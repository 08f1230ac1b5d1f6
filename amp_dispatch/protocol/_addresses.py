"""
Addresses as log fields, and socket options of connections.
"""

from __future__ import annotations

from typing import Any, Tuple

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import ITCPTransport


def host_port(address: Any) -> Tuple[str, int]:
    """
    A listener's or peer's host (or socket path) and port (0 for a socket).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host, address.port
    if isinstance(address, UNIXAddress):
        name: Any = address.name
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return str(name or "unix"), 0
    return str(address), 0


def describe(address: Any) -> str:
    """
    C{host:port} (C{[host]:port} for IPv6), or a Unix socket's path.
    """
    host, port = host_port(address)
    if isinstance(address, IPv6Address):
        return f"[{host}]:{port}"
    if isinstance(address, IPv4Address):
        return f"{host}:{port}"
    return host


def no_delay(transport: Any) -> None:
    """
    Send small writes at once on a TCP connection (no Nagle delay): answers
    are small and a peer waiting on one must not wait for an ACK.
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpNoDelay(True)
