"""
The admin listener's HTTP site: C{/metrics} (Prometheus's text format, by
C{prometheus_client}'s WSGI application on the reactor's thread pool, as
its Twisted resource serves it, but on the reactor given here), C{/healthz}
(the process serves) and C{/readyz} (it listens, and its store answers).

What a peer can cost it is bounded: at most L{ADMIN_MAX_CONNECTIONS} open
at once (within the file descriptors the service keeps in reserve, see
L{amp_dispatch.server._limits.FD_RESERVE}), request bodies read and thrown
away, silent connections closed after L{ADMIN_IDLE_TIMEOUT} seconds, and
Twisted's own bounds on request lines and headers.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from prometheus_client.exposition import make_wsgi_app
from twisted.internet.interfaces import IAddress
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.wsgi import WSGIResource

from ._metrics import Metrics

__all__ = ["admin_site"]

#: Seconds an admin connection may stay silent before it is closed.
ADMIN_IDLE_TIMEOUT = 30.0

#: The most admin connections open at once; more are closed at once.
ADMIN_MAX_CONNECTIONS = 8

#: Why the dispatcher is not ready (C{None}: it is).
ReadyCheck = Callable[[], Optional[str]]


class _Text(Resource):
    """
    A plain-text answer: C{answer()} gives the status and the text.
    """

    isLeaf = True

    def __init__(self, answer: Callable[[], Tuple[int, str]]) -> None:
        super().__init__()
        self._answer = answer

    def render_GET(self, request: Request) -> bytes:
        status, text = self._answer()
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return text.encode("utf-8") + b"\n"


class _Scrape(Resource):
    """
    C{/metrics}: reads the figures on the reactor's thread (L{Metrics.refresh}),
    then hands the request to the exposition.
    """

    isLeaf = True

    def __init__(self, metrics: Metrics, exposition: IResource) -> None:
        super().__init__()
        self._metrics = metrics
        self._exposition = exposition

    def render_GET(self, request: Request) -> Any:
        gone: List[object] = []
        request.notifyFinish().addBoth(gone.append)

        def expose(_: object) -> None:
            if not gone:  # the client left while the store was read
                self._exposition.render(request)

        self._metrics.refresh().addCallback(expose)
        return NOT_DONE_YET


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


class _Capped(WrappingFactory):
    """
    The site, at most L{ADMIN_MAX_CONNECTIONS} connections open at once.
    """

    noisy = False

    def buildProtocol(self, addr: Optional[IAddress]) -> Any:
        if len(self.protocols) >= ADMIN_MAX_CONNECTIONS:
            return None
        return super().buildProtocol(addr)


def admin_site(
    reactor: Any,
    metrics: Metrics,
    not_ready: ReadyCheck,
    exposition: Optional[IResource] = None,
) -> WrappingFactory:
    """
    The admin site's factory over C{metrics}; C{/readyz} answers 503 with the reason
    C{not_ready} gives, if any.

    @param exposition: serves the metrics once read (default:
        C{prometheus_client}'s WSGI application on C{reactor}'s thread pool).
    """
    exposed: IResource = exposition or WSGIResource(
        reactor, reactor.getThreadPool(), make_wsgi_app(metrics.registry)
    )

    def ready() -> Tuple[int, str]:
        reason = not_ready()
        return (200, "ready") if reason is None else (503, f"not ready: {reason}")

    root = Resource()
    root.putChild(b"metrics", _Scrape(metrics, exposed))
    root.putChild(b"healthz", _Text(lambda: (200, "ok")))
    root.putChild(b"readyz", _Text(ready))
    site = Site(root, requestFactory=_AdminRequest, timeout=ADMIN_IDLE_TIMEOUT, reactor=reactor)
    site.displayTracebacks = False
    site.noisy = False
    return _Capped(site)
