"""
Server wiring: the two listeners' factories over one queue, and the service
that listens on both endpoints.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Type

import structlog
from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorCore
from twisted.internet.protocol import ServerFactory
from twisted.protocols import amp
from twisted.python.failure import Failure

from ._addresses import host_port
from ._fastpath import FrontendProtocol, SchedulerProtocol, _FastBoxProtocol
from ._queue import WorkerQueue
from ._responders import FrontendResponder, SchedulerResponder, _RoleResponder

_log = structlog.get_logger("amp_dispatch.server")

DEFAULT_FRONTEND = "tcp:8750:interface=127.0.0.1"
DEFAULT_SCHEDULER = "tcp:8751:interface=127.0.0.1"


class _Protocol(amp.BinaryBoxProtocol):
    """
    The AMP box protocol for one connection, its boxes handled by a role's
    responder.
    """

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        # Like amp.AMP: answers that come due later are dropped, not written.
        self.transport = None


class _ListenerFactory(ServerFactory):
    """
    Builds each connection of one listener with a fresh responder of its role.
    """

    noisy = False

    def __init__(self, responder: Type[_RoleResponder], queue: WorkerQueue) -> None:
        self.responder = responder
        self.queue = queue

    def buildProtocol(self, addr: Optional[IAddress]) -> _Protocol:
        protocol = _Protocol(self.responder(self.queue))
        protocol.factory = self
        return protocol


class _FastFactory(ServerFactory):
    """
    Builds each connection of one listener with its fast-path protocol.
    """

    noisy = False

    def __init__(
        self, protocol: Callable[[WorkerQueue], _FastBoxProtocol], queue: WorkerQueue
    ) -> None:
        self.fast_protocol = protocol
        self.queue = queue

    def buildProtocol(self, addr: Optional[IAddress]) -> _FastBoxProtocol:
        protocol = self.fast_protocol(self.queue)
        protocol.factory = self
        return protocol


class Dispatcher:
    """
    A dispatcher's state and the factories of its two listeners.

    @param fast_path: answer C{NextWorker} and C{WorkerUpdate} on the fast
        path (L{FrontendProtocol}, L{SchedulerProtocol}); C{False} runs both
        listeners on Twisted's generic AMP protocol, which the tests compare
        it with.
    """

    def __init__(self, queue: WorkerQueue, *, fast_path: bool = True) -> None:
        self.queue = queue
        self.frontend_factory: ServerFactory
        self.scheduler_factory: ServerFactory
        if fast_path:
            self.frontend_factory = _FastFactory(FrontendProtocol, queue)
            self.scheduler_factory = _FastFactory(SchedulerProtocol, queue)
        else:
            self.frontend_factory = _ListenerFactory(FrontendResponder, queue)
            self.scheduler_factory = _ListenerFactory(SchedulerResponder, queue)


@frozen
class ListenAddress:
    """
    Where a listener listens.
    """

    role: str
    host: str
    port: int


class DispatcherService(Service):
    """
    Listens on the front-end and scheduler endpoints (any Twisted server
    endpoint strings) with an in-memory queue.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        frontend: str = DEFAULT_FRONTEND,
        scheduler: str = DEFAULT_SCHEDULER,
        lease_grace: float = 30.0,
        max_waiting: int = 10_000,
    ) -> None:
        self._reactor = reactor
        self.endpoints = {"frontend": frontend, "scheduler": scheduler}
        self.dispatcher = Dispatcher(
            WorkerQueue(reactor, lease_grace=lease_grace, max_waiting=max_waiting)
        )
        self._ports: List[IListeningPort] = []
        self.addresses: List[ListenAddress] = []

    def listen(self) -> Deferred[List[ListenAddress]]:
        """
        Listen on both endpoints; fires with where, or fails (listening on
        neither) when one cannot listen.
        """
        factories = {
            "frontend": self.dispatcher.frontend_factory,
            "scheduler": self.dispatcher.scheduler_factory,
        }
        listening = [
            serverFromString(self._reactor, self.endpoints[role]).listen(factories[role])
            for role in ("frontend", "scheduler")
        ]

        def listened(ports: List[IListeningPort]) -> List[ListenAddress]:
            self._ports = ports
            for role, port in zip(("frontend", "scheduler"), ports):
                address = ListenAddress(role, *host_port(port.getHost()))
                self.addresses.append(address)
                _log.info(
                    "listening",
                    role=role,
                    host=address.host,
                    port=address.port,
                    endpoint=self.endpoints[role],
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

    def startService(self) -> None:
        """
        Start listening unless L{listen} already did.
        """
        super().startService()
        if self._ports:
            return

        def failed(failure: Failure) -> None:
            _log.error("cannot listen", error=failure.getErrorMessage())
            if IReactorCore.providedBy(self._reactor):
                self._reactor.stop()

        self.listen().addErrback(failed)

    def stopService(self) -> Optional[Deferred[Any]]:
        super().stopService()
        self.dispatcher.queue.stop()
        ports, self._ports = self._ports, []
        _log.info("stopping")
        stopping = [port.stopListening() for port in ports]
        return gatherResults([d for d in stopping if d is not None]).addCallback(
            lambda _: _log.info("stopped")
        )
