"""
The admin listener's HTTP site: C{/metrics} (Prometheus's text format, or
OpenMetrics when asked, by C{prometheus_client}'s encoders), C{/healthz}
(the process serves) and C{/readyz} (it listens, and its store answers).

The exposition is made on the reactor's thread, at most once per reading
of the figures (L{Metrics.refresh}: at most one a second); scrapes in
between get the same bytes.  C{prometheus_client}'s own Twisted resource
would run its WSGI application on a thread pool: threads that compete with
the reactor for the interpreter under a flood of scrapes, and a resource
bound to the global reactor.

What a peer can cost is bounded: at most L{ADMIN_MAX_CONNECTIONS} open at
once (within the file descriptors the service keeps in reserve, see
L{amp_dispatch.server._limits.FD_RESERVE}), the oldest closed to make room
for a new one; each connection lives at most L{ADMIN_MAX_LIFETIME} seconds
(a slow peer cannot hold a place); all of them together handle at most
L{ADMIN_READS_PER_SECOND} reads a second (a read past it is held, its
connection not read, until the next second: a flood of requests waits, it
does not take the reactor from the AMP listeners); request bodies are read
and thrown away; Twisted bounds request lines and headers.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from ..protocol._peerlog import LogLimiter
from ._metrics import Metrics, Snapshot

__all__ = [
    "ADMIN_MAX_CONNECTIONS",
    "ADMIN_MAX_LIFETIME",
    "ADMIN_READS_PER_SECOND",
    "admin_site",
]

#: The most admin connections open at once; a new one closes the oldest.
ADMIN_MAX_CONNECTIONS = 8

#: Seconds an admin connection lives at most (Prometheus reconnects).
ADMIN_MAX_LIFETIME = 10.0

#: Reads of all admin connections together per second; past it, they wait
#: for the next second.
ADMIN_READS_PER_SECOND = 100

#: Why the dispatcher is not ready (C{None}: it is).
ReadyCheck = Callable[[], Optional[str]]


class _Leaf(Resource):
    """
    A resource at one path: deeper paths are not found; C{HEAD} answers as
    C{GET} does, without the body.
    """

    isLeaf = True

    def render(self, request: Request) -> Any:
        if request.postpath and request.postpath != [b""]:
            return notFound().render(request)
        return super().render(request)


class _Text(_Leaf):
    """
    A plain-text answer: C{answer()} gives the status and the text.
    """

    def __init__(self, answer: Callable[[], Tuple[int, str]]) -> None:
        super().__init__()
        self._answer = answer

    def render_GET(self, request: Request) -> bytes:
        status, text = self._answer()
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return text.encode("utf-8") + b"\n"


class _Scrape(_Leaf):
    """
    C{/metrics}: reads the figures (L{Metrics.refresh}), then answers their
    exposition in the format the scraper accepts, made once per reading.
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics
        # The expositions of the last reading, by content type.
        self._made: Dict[str, bytes] = {}
        self._made_of: Optional[Snapshot] = None

    def render_GET(self, request: Request) -> Any:
        gone: List[object] = []
        request.notifyFinish().addBoth(gone.append)

        def expose(snapshot: Snapshot) -> None:
            if gone:
                return  # the client left while the store was read
            encode, content_type = choose_encoder(
                (request.getHeader(b"accept") or b"").decode("latin-1")
            )
            if self._made_of is not snapshot:
                self._made, self._made_of = {}, snapshot
            body = self._made.get(content_type)
            if body is None:
                body = self._made[content_type] = encode(self._metrics.registry)
            request.setHeader(b"content-type", content_type.encode("ascii"))
            request.write(body)
            request.finish()

        self._metrics.refresh().addCallback(expose)
        return NOT_DONE_YET


class _Guarded(ProtocolWrapper):
    """
    One admin connection: closed at the end of its life, read within the
    shared budget.
    """

    factory: _Bounded
    # A read past the budget, held until the next second.
    _held: bytes = b""

    def makeConnection(self, transport: Any) -> None:
        self._end = self.factory.clock.callLater(
            ADMIN_MAX_LIFETIME, transport.abortConnection
        )
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self._held:
            self._held += data  # came before the pause took hold: bounded by one read
            return
        if self.factory.budget.allow():
            super().dataReceived(data)
            return
        self._held = data
        self.factory.held.append(self)
        transport: Any = self.transport
        transport.pauseProducing()

    def resume(self) -> None:
        """
        The budget has room again: handle the read held back, and read on.
        """
        data, self._held = self._held, b""
        transport: Any = self.transport
        if transport is None or not data:
            return
        transport.resumeProducing()
        self.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._held = b""
        if self._end.active():
            self._end.cancel()
        super().connectionLost(reason)


class _Bounded(WrappingFactory):
    """
    The site within the bounds of the module's docstring.
    """

    noisy = False
    protocol = _Guarded

    def __init__(self, site: Site, clock: IReactorTime) -> None:
        super().__init__(site)
        self.clock = clock
        # The reads of all connections per second; the limiter's report, at
        # the end of a second with reads held back, resumes their connections
        # (when a read starts the next second before the limiter's timer
        # fires, the reads resumed then are not counted: at most one per
        # connection).
        self.budget = LogLimiter(
            clock, self._resume_held, lines=ADMIN_READS_PER_SECOND, period=1.0
        )
        self.held: List[_Guarded] = []
        # Connections closed to make room, not yet gone.
        self._closing: Set[Any] = set()

    def _resume_held(self, count: int) -> None:
        held, self.held = self.held, []
        for connection in held:
            connection.resume()

    def buildProtocol(self, addr: Optional[IAddress]) -> Any:
        if len(self.protocols) - len(self._closing) >= ADMIN_MAX_CONNECTIONS:
            # The oldest goes (dicts keep the order connections came in).
            oldest = next(p for p in self.protocols if p not in self._closing)
            self._closing.add(oldest)
            oldest.transport.abortConnection()
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p: Any) -> None:
        self._closing.discard(p)
        super().unregisterProtocol(p)

    def stopFactory(self) -> None:
        self.budget.stop()
        super().stopFactory()


class _NoBody:
    """
    Where a request's body goes: nowhere (every admin resource is a GET).
    """

    def write(self, data: bytes) -> None:
        pass

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _AdminRequest(Request):
    """
    A request whose body is not kept.
    """

    def gotLength(self, length: Optional[int]) -> None:
        self.content = _NoBody()


def admin_site(reactor: Any, metrics: Metrics, not_ready: ReadyCheck) -> WrappingFactory:
    """
    The admin site's factory over C{metrics}; C{/readyz} answers 503 with
    the reason C{not_ready} gives, if any.
    """

    def ready() -> Tuple[int, str]:
        reason = not_ready()
        return (200, "ready") if reason is None else (503, f"not ready: {reason}")

    root = Resource()
    root.putChild(b"metrics", _Scrape(metrics))
    root.putChild(b"healthz", _Text(lambda: (200, "ok")))
    root.putChild(b"readyz", _Text(ready))
    site = Site(root, requestFactory=_AdminRequest, reactor=reactor)
    site.displayTracebacks = False
    site.noisy = False
    return _Bounded(site, reactor)
