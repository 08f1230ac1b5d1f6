"""
The factories of a dispatcher's two listeners over one store: the listeners'
own protocols with their caps, or Twisted's generic AMP protocol for the tests.
"""

from __future__ import annotations

from twisted.internet.protocol import ServerFactory

from ..protocol._generic import GenericFactory
from ..protocol._listening import FrontendProtocol, SchedulerProtocol
from ..protocol._receivers import FrontendResponder, SchedulerResponder
from ..store._memory import WorkerQueue
from ._config import DEFAULT_CONFIG, DispatcherConfig
from ._listener import ListenerFactory, ListenerSettings

__all__ = ["Dispatcher"]


class Dispatcher:
    """
    A dispatcher's state and the factories of its two listeners.

    @param config: the limits of the listeners' connections (its endpoints
        are not read here).
    @param fast_path: answer C{NextWorker}, C{WorkerUpdate} and C{Stats} on
        the fast path (L{FrontendProtocol}, L{SchedulerProtocol}); C{False}
        runs both listeners on Twisted's generic AMP protocol, without
        connection limits, which the tests compare it with.
    """

    def __init__(
        self,
        queue: WorkerQueue,
        config: DispatcherConfig = DEFAULT_CONFIG,
        *,
        fast_path: bool = True,
    ) -> None:
        self.queue = queue
        self.frontend_factory: ServerFactory
        self.scheduler_factory: ServerFactory
        if not fast_path:
            self.frontend_factory = GenericFactory(FrontendResponder, queue)
            self.scheduler_factory = GenericFactory(SchedulerResponder, queue)
            return
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
        self.frontend_factory = ListenerFactory(
            frontend, queue.clock, lambda factory: FrontendProtocol(queue, factory)
        )
        self.scheduler_factory = ListenerFactory(
            scheduler, queue.clock, lambda factory: SchedulerProtocol(queue, factory)
        )

    def stop(self) -> None:
        """
        The listeners stop: report the warnings they hold back.
        """
        for factory in (self.frontend_factory, self.scheduler_factory):
            if isinstance(factory, ListenerFactory):
                factory.stop()
