"""
The dispatcher as a service: listens on the front-end and scheduler
endpoints over one store, within the process's file descriptor limit, and
on the admin endpoint (metrics, health) unless it is C{none}.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from attrs import evolve, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.python.failure import Failure

from .._log import get_logger
from ..admin import ListenerCounts, Metrics, admin_site
from ..protocol._addresses import host_port
from ._config import DEFAULT_CONFIG, NO_ADMIN, DispatcherConfig
from ._limits import fit_caps, raise_fd_limit
from ._listener import ListenerFactory
from ._listeners import Listeners, build_listeners
from ._stores import open_store

__all__ = ["DispatcherService", "ListenAddress", "with_backlog"]

_log = get_logger("amp_dispatch.server")

#: Endpoint types whose server strings take a C{backlog} parameter.
_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix", "mtls")


def with_backlog(endpoint: str, backlog: int) -> str:
    """
    C{endpoint} with a C{backlog} parameter, unless it has one or its type
    takes none.
    """
    kind = endpoint.split(":", 1)[0].lower()
    if kind not in _BACKLOG_TYPES or ":backlog=" in endpoint:
        return endpoint
    return f"{endpoint}:backlog={backlog}"


@frozen
class ListenAddress:
    """
    Where a listener listens (C{role}: C{frontend}, C{scheduler} or
    C{admin}).
    """

    role: str
    host: str
    port: int


class DispatcherService(Service):
    """
    Listens on the front-end and scheduler endpoints (any Twisted server
    endpoint strings) over the store its config names.

    At L{listen} it raises the process's file descriptor limit (see
    L{_limits}) and fits the front-end connection cap under it.  Its
    L{metrics} count every command through the listeners' hook.

    @param fd_limit: returns the file descriptor limit to fit under, once
        raised; default L{raise_fd_limit}.
    """

    def __init__(
        self,
        reactor: Any,
        config: DispatcherConfig = DEFAULT_CONFIG,
        *,
        fd_limit: Callable[[], int] = raise_fd_limit,
        **settings: Any,
    ) -> None:
        self._reactor = reactor
        self.config = evolve(config, **settings)
        self._fd_limit = fd_limit
        self.store = open_store(reactor, self.config)
        self.metrics = Metrics(reactor, self.store, self._connection_counts)
        self._store_started = False
        self.listeners: Optional[Listeners] = None
        self._ports: List[IListeningPort] = []
        self.addresses: List[ListenAddress] = []

    def listen(self) -> Deferred[List[ListenAddress]]:
        """
        Listen on both endpoints; fires with where, or fails (listening on
        neither) when one cannot listen.
        """
        frontend, scheduler = fit_caps(
            self.config.max_frontend_connections,
            self.config.max_scheduler_connections,
            self._fd_limit(),
        )
        config = evolve(
            self.config, max_frontend_connections=frontend, max_scheduler_connections=scheduler
        )
        self.listeners = build_listeners(self.store, self._reactor, config, hook=self.metrics)
        served: List[Tuple[str, str, Any]] = [
            (listener.role, listener.endpoint, listener.factory) for listener in self.listeners
        ]
        if config.admin != NO_ADMIN:
            site = admin_site(self._reactor, self.metrics, self.not_ready)
            served.append(("admin", config.admin, site))
        try:
            listening = [
                serverFromString(self._reactor, with_backlog(endpoint, config.backlog)).listen(
                    factory
                )
                for _, endpoint, factory in served
            ]
        except Exception:
            return fail()

        def listened(ports: List[IListeningPort]) -> List[ListenAddress]:
            self._ports = ports
            for (role, endpoint, _), port in zip(served, ports):
                address = ListenAddress(role, *host_port(port.getHost()))
                self.addresses.append(address)
                _log.info(
                    "listening", role=role, host=address.host, port=address.port, endpoint=endpoint
                )
            return self.addresses

        def failed(failure: Failure) -> Failure:
            for result in listening:
                result.addCallback(lambda port: port.stopListening())
                result.addErrback(lambda _: None)
            return failure

        return (
            DeferredList(listening, fireOnOneErrback=True, consumeErrors=True)
            .addCallback(lambda results: [port for _, port in results])
            .addCallbacks(listened, lambda f: failed(f.value.subFailure))
        )

    def not_ready(self) -> Optional[str]:
        """
        Why the dispatcher cannot serve now (not listening, or its store
        does not answer), or C{None} when it can.
        """
        if not self._ports:
            return "not listening"
        if not self.store.available():
            return "the store does not answer"
        return None

    def _connection_counts(self) -> List[ListenerCounts]:
        counts = []
        for listener in self.listeners or ():
            factory = listener.factory
            if isinstance(factory, ListenerFactory):
                counts.append(
                    ListenerCounts(listener.role, factory.open, factory.refused, factory.evicted)
                )
        return counts

    def start_store(self) -> None:
        """
        Start the store's background work (its link and timers), once.
        """
        if not self._store_started:
            self._store_started = True
            self.store.start()

    def startService(self) -> None:
        """
        Start the store, and listening unless L{listen} already did.
        """
        super().startService()
        self.start_store()
        if self._ports:
            return

        def failed(failure: Failure) -> None:
            _log.error("cannot listen", error=failure.getErrorMessage())
            if IReactorCore.providedBy(self._reactor):
                # Under twist the service starts before the reactor runs.
                self._reactor.callWhenRunning(self._reactor.stop)

        self.listen().addErrback(failed)

    def stopService(self) -> Optional[Deferred[Any]]:
        super().stopService()
        stopping: List[Deferred[Any]] = [maybeDeferred(self.store.stop)]
        if self.listeners is not None:
            self.listeners.stop()
        ports, self._ports = self._ports, []
        _log.info("stopping")
        stopped = (port.stopListening() for port in ports)
        stopping += [d for d in stopped if d is not None]
        return gatherResults(stopping, consumeErrors=True).addCallback(
            lambda _: _log.info("stopped")
        )
