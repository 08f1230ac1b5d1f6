"""
Fixtures of the integration tests: the real dispatcher process, clients of it
and raw AMP connections, each cleaned up at the end of the test (processes
stopped with SIGTERM and checked to exit 0 after logging C{stopping}).

The client libraries are imported only inside the client fixtures, so the
contract guard (which uses none of them) never loads C{amp_dispatch}.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, List, Type, TypeVar

import pytest
import pytest_twisted

from ._process import DispatcherLauncher, DispatcherProcess, RawAMP, connect_amp

if TYPE_CHECKING:
    from amp_dispatch.client import FrontendClient, SchedulerClient

#: Seconds between reconnect attempts of the test clients (the default
#: backoff starts at one second and adds up to one of jitter).
RECONNECT_DELAY = 0.1


def quick_retry(attempt: int) -> float:
    """
    The test clients' retry policy: a short, constant reconnect delay.
    """
    return RECONNECT_DELAY


@pytest_twisted.async_yield_fixture
async def dispatchers(reactor: Any) -> AsyncIterator[DispatcherLauncher]:
    """
    Starts dispatcher processes; at the end stops those still running and
    checks that each stopped cleanly.
    """
    launcher = DispatcherLauncher(reactor)
    try:
        yield launcher
    finally:
        await launcher.stop_all()


@pytest_twisted.async_fixture
async def dispatcher(dispatchers: DispatcherLauncher) -> DispatcherProcess:
    """
    A dispatcher with default options on free loopback ports.
    """
    return await dispatchers.start()


Cleanup = Callable[[Callable[[], Awaitable[Any]]], None]


@pytest_twisted.async_yield_fixture
async def cleanup() -> AsyncIterator[Cleanup]:
    """
    Register async clean-ups, run last registered first at the end.
    """
    steps: List[Callable[[], Awaitable[Any]]] = []
    try:
        yield steps.append
    finally:
        errors: List[BaseException] = []
        for step in reversed(steps):
            try:
                await step()
            except BaseException as e:
                errors.append(e)
        if errors:
            raise errors[0]


_Client = TypeVar("_Client", "FrontendClient", "SchedulerClient")


def _started(
    client_type: Type[_Client], endpoint: str, reactor: Any, cleanup: Cleanup, options: Any
) -> _Client:
    options.setdefault("retry_policy", quick_retry)
    client = client_type(reactor, endpoint, **options)
    client.start()
    cleanup(client.stop)
    return client


@pytest.fixture
def frontend_client(
    reactor: Any, dispatcher: DispatcherProcess, cleanup: Cleanup
) -> Callable[..., FrontendClient]:
    """
    Makes started L{FrontendClient}s of C{dispatcher} (stopped at the end).
    """
    from amp_dispatch.client import FrontendClient

    return lambda **options: _started(
        FrontendClient, dispatcher.frontend, reactor, cleanup, options
    )


@pytest.fixture
def scheduler_client(
    reactor: Any, dispatcher: DispatcherProcess, cleanup: Cleanup
) -> Callable[..., SchedulerClient]:
    """
    Makes started L{SchedulerClient}s of C{dispatcher} (stopped at the end).
    """
    from amp_dispatch.client import SchedulerClient

    return lambda **options: _started(
        SchedulerClient, dispatcher.scheduler, reactor, cleanup, options
    )


@pytest.fixture
def amp_connect(reactor: Any, cleanup: Cleanup) -> Callable[[int], Awaitable[RawAMP]]:
    """
    Opens raw AMP connections to a loopback port (closed at the end).
    """

    async def connect(port: int) -> RawAMP:
        protocol = await connect_amp(reactor, port)
        cleanup(lambda: protocol.close(reactor))
        return protocol

    return connect
