"""
The admin listener's HTTP site: C{/metrics} (Prometheus's text format, by
C{prometheus_client}'s WSGI application on the reactor's thread pool, as
its Twisted resource serves it, but on the reactor given here), C{/healthz}
(the process serves) and C{/readyz} (it listens, and its store answers).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from prometheus_client.exposition import make_wsgi_app
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.wsgi import WSGIResource

from ._metrics import Metrics

__all__ = ["admin_site"]

#: Seconds an admin connection may stay silent before it is closed.
ADMIN_IDLE_TIMEOUT = 30.0

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


def admin_site(
    reactor: Any,
    metrics: Metrics,
    not_ready: ReadyCheck,
    exposition: Optional[IResource] = None,
) -> Site:
    """
    The admin site over C{metrics}; C{/readyz} answers 503 with the reason
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
    site = Site(root, timeout=ADMIN_IDLE_TIMEOUT)
    site.displayTracebacks = False
    site.noisy = False
    return site
