"""
The real C{amp-dispatch serve} process with its scheduler listener on an
C{mtls:} endpoint: clients with a certificate from the trusted CA (the client
library, the probe) are answered; clients with another CA's certificate or
none are refused (the call gets no answer; the dispatcher logs the failed
handshake and its AMP side never sees the connection); a wrong C{mtls:}
string stops the process with C{cannot listen}.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import pytest_twisted
from amp_dispatch_commands import Stats, WorkerUpdate
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.error import ConnectionClosed

from .._pki import PKI, TLS_CLIENT_WARNINGS, make_pki
from ._process import (
    LIVENESS_TIMEOUT,
    DispatcherLauncher,
    DispatcherProcess,
    ProcessGone,
    RawAMP,
    call_remote,
    connect_raw,
    probe_process,
)
from .conftest import Cleanup, quick_retry

pytestmark = TLS_CLIENT_WARNINGS

WORKER = {"worker_id": "w1", "host": "10.0.0.1", "port": 9000, "capacity": 2}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """
    Certificates for this module's tests.
    """
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest_twisted.async_fixture
async def mtls_dispatcher(dispatchers: DispatcherLauncher, pki: PKI) -> DispatcherProcess:
    """
    A dispatcher whose scheduler listener is C{mtls:} on a free loopback
    port (the front end stays plain TCP).
    """
    return await dispatchers.start(scheduler=pki.mtls())


async def connect_endpoint(reactor: Any, endpoint: str, cleanup: Cleanup) -> RawAMP:
    """
    A raw AMP connection over the client endpoint string C{endpoint}
    (closed at the end).
    """
    protocol = RawAMP()
    connecting: Deferred[RawAMP] = connectProtocol(clientFromString(reactor, endpoint), protocol)
    connecting.addTimeout(LIVENESS_TIMEOUT, reactor)
    await connecting
    cleanup(lambda: protocol.close(reactor))
    return protocol


def started(client_type: Any, reactor: Any, endpoint: str, cleanup: Cleanup) -> Any:
    """
    A started client of C{client_type} (L{SchedulerClient} or
    L{FrontendClient}) of C{endpoint}, stopped at the end.
    """
    client = client_type(reactor, endpoint, call_timeout=LIVENESS_TIMEOUT, retry_policy=quick_retry)
    client.start()
    cleanup(client.stop)
    return client


@pytest_twisted.ensureDeferred
async def test_client_library_with_certificate(
    reactor: Any, mtls_dispatcher: DispatcherProcess, pki: PKI, cleanup: Cleanup
) -> None:
    """
    L{SchedulerClient} with a certificate of the trusted CA registers a
    worker over Twisted's C{tls:} client endpoint; the front end (plain TCP)
    gets it.
    """
    from amp_dispatch.client import FrontendClient, SchedulerClient, Worker

    endpoint = pki.tls(mtls_dispatcher.scheduler_port, pki.client)
    scheduler = started(SchedulerClient, reactor, endpoint, cleanup)
    frontend = started(FrontendClient, reactor, mtls_dispatcher.frontend, cleanup)
    assert await scheduler.update("w1", "10.0.0.1", 9000, 2) is True
    assert await frontend.next_worker() == Worker("w1", "10.0.0.1", 9000)
    assert mtls_dispatcher.log.found({"event": "connection opened", "role": "scheduler"})
    assert mtls_dispatcher.log.found({"event": "tls handshake failed"}) == []


@pytest_twisted.ensureDeferred
async def test_client_library_refused_clearly(
    reactor: Any, mtls_dispatcher: DispatcherProcess, pki: PKI, cleanup: Cleanup
) -> None:
    """
    L{SchedulerClient} with another CA's certificate: the call fails with
    L{DispatcherUnavailable}, naming the TLS alert.
    """
    from amp_dispatch.client import DispatcherUnavailable, SchedulerClient

    endpoint = pki.tls(mtls_dispatcher.scheduler_port, pki.other_client)
    scheduler = started(SchedulerClient, reactor, endpoint, cleanup)
    with pytest.raises(DispatcherUnavailable, match="unknown ca"):
        await scheduler.update("w1", "10.0.0.1", 9000, 2)


@pytest_twisted.ensureDeferred
async def test_silent_sockets_cannot_lock_out_scheduler(
    reactor: Any, dispatchers: DispatcherLauncher, pki: PKI, cleanup: Cleanup
) -> None:
    """
    Plain TCP connections that never start TLS fill the scheduler
    listener: the scheduler with its certificate still gets in (a silent
    connection holding no worker is evicted to make room).
    """
    from amp_dispatch.client import SchedulerClient

    process = await dispatchers.start(
        scheduler=pki.mtls(), more=["--max-scheduler-connections", "2"]
    )
    for _ in range(2):
        cleanup(partial((await connect_raw(reactor, process.scheduler_port)).close, reactor))
    endpoint = pki.tls(process.scheduler_port, pki.client)
    scheduler = started(SchedulerClient, reactor, endpoint, cleanup)
    assert await scheduler.update("w1", "10.0.0.1", 9000, 2) is True
    assert process.log.found({"event": "connection evicted", "role": "scheduler"})


@pytest_twisted.ensureDeferred
async def test_probe_with_certificate(
    reactor: Any, mtls_dispatcher: DispatcherProcess, pki: PKI
) -> None:
    """
    C{amp-dispatch probe --scheduler tls:...:certificate=...:privateKey=...}
    registers a worker and reads the scheduler listener's stats.
    """
    scheduler = pki.tls(mtls_dispatcher.scheduler_port, pki.client)
    updated = await probe_process(
        reactor, "--scheduler", scheduler, "update", "w1", "10.0.0.1", "9000", "2"
    )
    assert updated == ("accepted\n", "", 0)
    out, err, code = await probe_process(
        reactor, "--scheduler", scheduler, "stats", "--scheduler", "--json"
    )
    assert (err, code) == ("", 0)
    assert json.loads(out)["workers"] == 1


async def refused(reactor: Any, endpoint: str, cleanup: Cleanup) -> BaseException:
    """
    The error of a C{WorkerUpdate} over C{endpoint}, which must get no answer.
    """
    protocol = await connect_endpoint(reactor, endpoint, cleanup)
    try:
        answer = await call_remote(reactor, protocol, WorkerUpdate, **WORKER)
    except (SSL.Error, ConnectionClosed) as e:
        return e
    raise AssertionError(f"answered: {answer!r}")


async def workers(reactor: Any, dispatcher: DispatcherProcess, cleanup: Cleanup) -> int:
    """
    How many workers the dispatcher has (Stats on the plain front end).
    """
    protocol = await connect_endpoint(reactor, dispatcher.frontend, cleanup)
    return int((await call_remote(reactor, protocol, Stats))["workers"])


@pytest_twisted.ensureDeferred
async def test_certificate_from_other_ca_refused(
    reactor: Any, mtls_dispatcher: DispatcherProcess, pki: PKI, cleanup: Cleanup
) -> None:
    """
    A client certificate from a CA the dispatcher does not trust: the call
    gets no answer and registers nothing.
    """
    endpoint = pki.tls(mtls_dispatcher.scheduler_port, pki.other_client)
    error = await refused(reactor, endpoint, cleanup)
    assert "unknown ca" in str(error)
    assert await workers(reactor, mtls_dispatcher, cleanup) == 0
    await never_reached_amp(mtls_dispatcher, "certificate verify failed")


@pytest_twisted.ensureDeferred
async def test_client_without_certificate_refused(
    reactor: Any, mtls_dispatcher: DispatcherProcess, pki: PKI, cleanup: Cleanup
) -> None:
    """
    A client without a certificate: the call gets no answer and registers
    nothing.
    """
    await refused(reactor, pki.tls(mtls_dispatcher.scheduler_port), cleanup)
    assert await workers(reactor, mtls_dispatcher, cleanup) == 0
    await never_reached_amp(mtls_dispatcher, "certificate")


async def never_reached_amp(dispatcher: DispatcherProcess, why: str) -> None:
    """
    The dispatcher logged the failed handshake at warning with the peer and
    C{why}, and its AMP side never saw the connection.
    """
    failed = await dispatcher.log.wait_for({"event": "tls handshake failed"})
    assert (failed["level"], failed["role"]) == ("warning", "scheduler")
    assert failed["peer"].startswith("127.0.0.1:")
    assert why in failed["reason"]
    assert dispatcher.log.found({"event": "connection opened", "role": "scheduler"}) == []


@pytest_twisted.ensureDeferred
async def test_probe_without_certificate_fails(
    reactor: Any, mtls_dispatcher: DispatcherProcess, pki: PKI
) -> None:
    """
    The probe without a client certificate gets no answer: exit status 1,
    nothing on stdout.
    """
    scheduler = pki.tls(mtls_dispatcher.scheduler_port)
    out, err, code = await probe_process(reactor, "--scheduler", scheduler, "stats", "--scheduler")
    assert (out, code) == ("", 1)
    assert err.startswith("amp-dispatch probe: ")


@pytest_twisted.ensureDeferred
async def test_string_without_ca_cannot_listen(dispatchers: DispatcherLauncher, pki: PKI) -> None:
    """
    An C{mtls:} string without C{caCerts}: a usage error (exit status 2)
    naming the option and the parameter, before anything listens.
    """
    without_ca = pki.mtls().split(":caCerts=")[0]
    with pytest.raises(ProcessGone):
        await dispatchers.start(scheduler=without_ca)
    log = dispatchers.processes[-1].log
    assert log.exit_code == 2
    assert b"amp-dispatch: --scheduler: mtls: caCerts: missing" in log.stderr
