"""
Non-blocking attack connections: output queued and written as the socket
accepts it, input read as it comes (counted, or handed back for parsing),
and a note of whether and how the server closed the connection.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import selectors
import socket
import time
from typing import Deque, Iterable, List, Optional

from .wire import connect

#: The most bytes one C{send} is given.
SEND_CHUNK = 1 << 20
_CLOSED_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN}


class Conn:
    """
    One non-blocking connection to the server.  C{queue} adds output,
    C{flush} writes what the socket takes, C{read} reads what came;
    C{closed} turns true when the server closed it (C{reason} says how).
    """

    def __init__(self, port: int, timeout: float = 5.0, sock: Optional[socket.socket] = None):
        self.sock = sock if sock is not None else connect(port, timeout)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.closed = False
        self.reason = ""
        self.sent = 0
        self.received = 0
        self._out: Deque[bytes] = collections.deque()
        self._queued = 0

    def queue(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._queued += len(data)

    def pending(self) -> int:
        """
        Bytes queued and not written yet.
        """
        return self._queued

    def discard_output(self) -> None:
        self._out.clear()
        self._queued = 0

    def _lost(self, reason: str) -> None:
        self.closed = True
        if not self.reason:
            self.reason = reason

    def flush(self) -> int:
        """
        Write what the socket takes now; the bytes written.
        """
        written = 0
        out = self._out
        while out and not self.closed:
            if len(out) > 1 and len(out[0]) < SEND_CHUNK:
                parts: List[bytes] = []
                size = 0
                while out and size < SEND_CHUNK:
                    part = out.popleft()
                    parts.append(part)
                    size += len(part)
                out.appendleft(b"".join(parts))
            data = out[0]
            try:
                n = self.sock.send(data)
            except BlockingIOError:
                break
            except OSError as e:
                self._lost(f"send: {errno.errorcode.get(e.errno or 0, str(e))}")
                break
            written += n
            if n == len(data):
                out.popleft()
            else:
                out[0] = data[n:]
                break
        self.sent += written
        self._queued -= written
        return written

    def read(self, keep: bool = False) -> bytes:
        """
        Read what has come (kept and returned with C{keep}, else only
        counted); notes a close by the server.
        """
        chunks: List[bytes] = []
        while not self.closed:
            try:
                data = self.sock.recv(262144)
            except BlockingIOError:
                break
            except OSError as e:
                self._lost(f"recv: {errno.errorcode.get(e.errno or 0, str(e))}")
                break
            if not data:
                self._lost("closed by the server")
                break
            self.received += len(data)
            if keep:
                chunks.append(data)
            if len(data) < 262144:
                break
        return b"".join(chunks)

    def close(self, reset: bool = False) -> None:
        """
        Close it (with C{reset}, at once with an RST: no TIME_WAIT left).
        """
        if reset:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
        self.sock.close()
        self.closed = True


def close_all(conns: Iterable[Conn], reset: bool = True) -> None:
    for conn in conns:
        if conn.sock.fileno() >= 0:
            conn.close(reset)


class Loop:
    """
    Readiness of many connections (C{selectors}): C{wait} returns the ones
    readable or, if they have output queued, writable.
    """

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}

    def add(self, conn: Conn) -> None:
        self.conns[conn.fd] = conn
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def remove(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is not None:
            self.selector.unregister(conn.sock)

    def wait(self, timeout: float) -> List[Conn]:
        for conn in self.conns.values():
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.pending() else 0)
            self.selector.modify(conn.sock, events, conn)
        return [key.data for key, _ in self.selector.select(timeout)]

    def close(self) -> None:
        self.selector.close()


def wait_closed(conn: Conn, seconds: float) -> bool:
    """
    Read (and drop) what comes on C{conn} for up to C{seconds}; whether the
    server closed it meanwhile.
    """
    deadline = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    sel.register(conn.sock, selectors.EVENT_READ)
    try:
        while not conn.closed and time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                conn.read()
    finally:
        sel.close()
    return conn.closed
