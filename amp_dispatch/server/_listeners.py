"""
A dispatcher's listeners as data: each one's role, server endpoint and
factory, built over one store.  The listeners' own protocols with their
caps serve; Twisted's generic AMP protocol can stand in for them (the tests'
oracle).
"""

from __future__ import annotations

from typing import Iterator

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory

from ..protocol._generic import GenericFactory
from ..protocol._hooks import CommandHook, ConnectionInfo, no_hook
from ..protocol._receivers import FrontendReceiver, SchedulerReceiver
from ..protocol._roles import FrontendProtocol, SchedulerProtocol
from ..store._interface import IWorkerStore
from ._config import DEFAULT_CONFIG, DispatcherConfig
from ._listener import ListenerFactory, ListenerSettings

__all__ = ["Listener", "Listeners", "build_listeners"]


@frozen
class Listener:
    """
    One listener of a dispatcher.

    @ivar role: C{"frontend"} or C{"scheduler"}.
    @ivar endpoint: the server endpoint string it listens on.
    @ivar factory: builds the protocol of each connection.
    """

    role: str
    endpoint: str
    factory: ServerFactory


@frozen
class Listeners:
    """
    The two listeners of a dispatcher, over one store.
    """

    frontend: Listener
    scheduler: Listener

    def __iter__(self) -> Iterator[Listener]:
        return iter((self.frontend, self.scheduler))

    def stop(self) -> None:
        """
        The listeners stop: report the warnings they hold back.
        """
        for listener in self:
            if isinstance(listener.factory, ListenerFactory):
                listener.factory.stop()


def build_listeners(
    store: IWorkerStore,
    clock: IReactorTime,
    config: DispatcherConfig = DEFAULT_CONFIG,
    *,
    hook: CommandHook = no_hook,
    fast_path: bool = True,
) -> Listeners:
    """
    The listeners of a dispatcher over C{store}, as C{config} says (its
    endpoints and connection limits).

    @param clock: times idle connections and limits log lines.
    @param hook: told of every command handled, with its outcome.
    @param fast_path: the listeners' own protocols (L{FrontendProtocol},
        L{SchedulerProtocol}); C{False} runs both listeners on Twisted's
        generic AMP protocol, without connection limits, which the tests
        compare them with.
    """
    if not fast_path:
        return Listeners(
            Listener(
                "frontend",
                config.frontend,
                GenericFactory(
                    lambda: FrontendReceiver(store, clock, ConnectionInfo("frontend"), hook)
                ),
            ),
            Listener(
                "scheduler",
                config.scheduler,
                GenericFactory(
                    lambda: SchedulerReceiver(store, clock, ConnectionInfo("scheduler"), hook)
                ),
            ),
        )
    frontend = ListenerSettings(
        "frontend",
        max_connections=config.max_frontend_connections,
        max_box_bytes=config.max_box_bytes,
        idle_timeout=config.idle_timeout,
    )
    scheduler = ListenerSettings(
        "scheduler",
        max_connections=config.max_scheduler_connections,
        max_box_bytes=config.max_box_bytes,
        # A silent connection holding no worker must not lock out the
        # scheduler: when full, the listener closes one to make room.
        evict=True,
    )
    return Listeners(
        Listener(
            "frontend",
            config.frontend,
            ListenerFactory(
                frontend, clock, lambda factory: FrontendProtocol(store, factory, hook)
            ),
        ),
        Listener(
            "scheduler",
            config.scheduler,
            ListenerFactory(
                scheduler, clock, lambda factory: SchedulerProtocol(store, factory, hook)
            ),
        ),
    )
