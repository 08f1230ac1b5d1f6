"""
The C{mtls:} server endpoint strings (L{amp_dispatch.server._mtls}): the parser's
parameters and errors on a L{MemoryReactor}, and real loopback listeners of
the dispatcher's factories that answer clients with a certificate from the
trusted CA and refuse every other client.
"""

# pytest_twisted has no type hints: its decorators are untyped.

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Dict, List

import pytest
import pytest_twisted
from amp_dispatch_commands import Stats, WorkerUpdate
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    clientFromString,
    connectProtocol,
    serverFromString,
)
from twisted.internet.error import ConnectionClosed
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ServerFactory
from twisted.internet.testing import MemoryReactor
from twisted.protocols import amp

from amp_dispatch.client import FrontendClient, SchedulerClient, Worker
from amp_dispatch.server._listeners import build_listeners
from amp_dispatch.server._mtls import mutual_tls_options
from amp_dispatch.server._stores import open_memory_store

from ._pki import PKI, TLS_CLIENT_WARNINGS, make_pki

pytestmark = TLS_CLIENT_WARNINGS

#: Seconds a loopback exchange may take before the test fails (liveness).
TIMEOUT = 15.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """
    Certificates for this module's tests.
    """
    return make_pki(tmp_path_factory.mktemp("pki"))


def listened(description: str) -> Dict[str, Any]:
    """
    What C{serverFromString(description).listen} asks of the reactor's
    C{listenSSL}: C{port}, C{factory}, C{options}, C{backlog}, C{interface}.
    """
    reactor = MemoryReactor()
    factory = Factory()
    serverFromString(reactor, description).listen(factory)
    [(port, used, options, backlog, interface)] = reactor.sslServers
    assert used is factory
    return {"port": port, "options": options, "backlog": backlog, "interface": interface}


# -- the parser ----------------------------------------------------------------


def test_server_from_string_finds_the_plugin(pki: PKI) -> None:
    """
    Twisted's plugin system finds the C{mtls} parser (from
    C{twisted/plugins/amp_dispatch_mtls.py}): C{serverFromString} gives an
    SSL endpoint.
    """
    endpoint = serverFromString(MemoryReactor(), pki.mtls(8751))
    assert isinstance(endpoint, SSL4ServerEndpoint)


def test_port_interface_and_backlog(pki: PKI) -> None:
    """
    The port, C{interface} and C{backlog} go to C{listenSSL}.
    """
    got = listened(pki.mtls(8751, extra=":backlog=7"))
    assert (got["port"], got["interface"], got["backlog"]) == (8751, "127.0.0.1", 7)


def test_defaults_like_tcp(pki: PKI) -> None:
    """
    Without C{interface} and C{backlog}: all interfaces, a backlog of 50.
    """
    got = listened(
        f"mtls:8751:certKey={pki.server.cert}:privateKey={pki.server.key}:caCerts={pki.ca}"
    )
    assert (got["interface"], got["backlog"]) == ("", 50)


def test_port_as_keyword(pki: PKI) -> None:
    """
    The port may also be given as C{port=}.
    """
    got = listened(
        f"mtls:port=8751:certKey={pki.server.cert}:privateKey={pki.server.key}:caCerts={pki.ca}"
    )
    assert got["port"] == 8751


def test_client_certificate_required_and_verified(pki: PKI) -> None:
    """
    The TLS context asks for the client's certificate, fails the handshake
    without one, and verifies it.
    """
    context = listened(pki.mtls())["options"].getContext()
    assert context.get_verify_mode() & SSL.VERIFY_PEER
    assert context.get_verify_mode() & SSL.VERIFY_FAIL_IF_NO_PEER_CERT


@pytest.mark.parametrize("given", ["certKey", "privateKey"])
def test_one_file_with_key_and_certificate(pki: PKI, given: str) -> None:
    """
    A file holding both key and certificate may be named by C{certKey} or
    C{privateKey} alone (the other defaults to it).
    """
    options = listened(f"mtls:0:{given}={pki.server_combined}:caCerts={pki.ca}")["options"]
    assert options.certificate.to_cryptography() == cert_of(pki.server.cert)
    options.getContext().check_privatekey()  # the key is the certificate's


def test_extra_cert_chain(pki: PKI) -> None:
    """
    C{extraCertChain}'s certificates are sent after the server's.
    """
    options = listened(
        pki.mtls(server=pki.chained_server, extra=f":extraCertChain={pki.intermediate}")
    )["options"]
    assert [c.to_cryptography() for c in options.extraCertChain] == [cert_of(pki.intermediate)]


def test_dh_parameters(pki: PKI) -> None:
    """
    C{dhParameters} names the file of Diffie-Hellman parameters, as for
    C{ssl:}.
    """
    options = listened(pki.mtls(extra=f":dhParameters={pki.dh}"))["options"]
    assert options.dhParameters._dhFile.path == str(pki.dh)


def cert_of(path: Path) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def garbage(pki: PKI) -> Path:
    path = pki.directory / "garbage.pem"
    path.write_bytes(b"not a PEM file\n")
    return path


def encrypted_key(pki: PKI) -> Path:
    from cryptography.hazmat.primitives import serialization

    path = pki.directory / "encrypted.key"
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), password=None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


#: Wrong strings and the start of their error message: (id, make the string, message).
WRONG = [
    ("no port", lambda p: f"mtls:certKey={p.server.cert}:caCerts={p.ca}", "mtls: port: missing"),
    ("bad port", lambda p: p.mtls().replace("mtls:0:", "mtls:http:"), "mtls: port: must be"),
    ("big port", lambda p: p.mtls(65536), "mtls: port: must be an integer within 0..65535"),
    ("port twice", lambda p: p.mtls(extra=":port=1"), "mtls: port: given twice"),
    ("bad backlog", lambda p: p.mtls(extra=":backlog=many"), "mtls: backlog: must be"),
    ("no caCerts", lambda p: p.mtls().split(":caCerts=")[0], "mtls: caCerts: missing"),
    (
        "no certKey",
        lambda p: f"mtls:0:caCerts={p.ca}",
        "mtls: certKey: missing",
    ),
    ("unknown", lambda p: p.mtls(extra=":cacerts=x"), "mtls: unknown parameter 'cacerts'"),
    ("positional", lambda p: p.mtls(extra=":x"), "mtls: one positional parameter"),
    (
        "unreadable caCerts",
        lambda p: p.mtls(ca=p.directory / "missing.pem"),
        "mtls: caCerts: cannot read",
    ),
    ("garbage caCerts", lambda p: p.mtls(ca=garbage(p)), "mtls: caCerts: "),
    (
        "key as caCerts",
        lambda p: p.mtls(ca=p.client.key),
        "mtls: caCerts: ",
    ),
    (
        "garbage certKey",
        lambda p: p.mtls().replace(f"certKey={p.server.cert}", f"certKey={garbage(p)}"),
        "mtls: certKey: ",
    ),
    (
        "unreadable privateKey",
        lambda p: p.mtls().replace(str(p.server.key), str(p.directory / "missing.key")),
        "mtls: privateKey: cannot read",
    ),
    (
        "certificate as privateKey",
        lambda p: p.mtls().replace(str(p.server.key), str(p.ca)),
        "mtls: privateKey: ",
    ),
    (
        "encrypted privateKey",
        lambda p: p.mtls().replace(str(p.server.key), str(encrypted_key(p))),
        "mtls: privateKey: ",
    ),
    (
        "key of another certificate",
        lambda p: p.mtls().replace(str(p.server.key), str(p.client.key)),
        "mtls: privateKey: ",
    ),
    (
        "garbage extraCertChain",
        lambda p: p.mtls(extra=f":extraCertChain={garbage(p)}"),
        "mtls: extraCertChain: ",
    ),
    (
        "garbage dhParameters",
        lambda p: p.mtls(extra=f":dhParameters={garbage(p)}"),
        "mtls: dhParameters: ",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [(make, message) for _, make, message in WRONG], ids=[w[0] for w in WRONG]
)
def test_wrong_string_names_the_parameter(pki: PKI, make: Any, message: str) -> None:
    """
    A wrong C{mtls:} string raises L{ValueError} whose message starts with
    C{mtls:} and the parameter at fault.
    """
    with pytest.raises(ValueError) as raised:
        serverFromString(MemoryReactor(), make(pki))
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("parameter", ["caCerts", "certKey", "extraCertChain", "dhParameters"])
def test_file_error_names_the_path(pki: PKI, parameter: str) -> None:
    """
    The message names the file that does not hold what it should.
    """
    path = garbage(pki)
    files = {"certKey": str(pki.server.cert), "privateKey": str(pki.server.key)}
    files["caCerts"] = str(pki.ca)
    files[parameter] = str(path)
    with pytest.raises(ValueError) as raised:
        mutual_tls_options(**files)
    assert str(raised.value).startswith(f"mtls: {parameter}: {str(path)!r} holds no PEM ")


# -- real loopback listeners -----------------------------------------------------


class Served:
    """
    A dispatcher (fast path or generic) with its scheduler listener on an
    C{mtls:} loopback port and its front-end listener on plain TCP.
    """

    def __init__(self, reactor: Any, fast_path: bool) -> None:
        self.reactor = reactor
        self.store = open_memory_store(reactor)
        self.listeners = build_listeners(self.store, reactor, fast_path=fast_path)
        self.ports: List[IListeningPort] = []

    async def listen(self, description: str, factory: ServerFactory) -> int:
        port: IListeningPort = await serverFromString(self.reactor, description).listen(factory)
        self.ports.append(port)
        return int(port.getHost().port)  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self.store.stop()
        for port in self.ports:
            stopping = port.stopListening()
            if stopping is not None:
                await stopping


@pytest_twisted.async_yield_fixture
async def served(reactor: Any, fast_path: bool) -> AsyncIterator[Served]:
    """
    A dispatcher in this process, stopped at the end.
    """
    dispatcher = Served(reactor, fast_path)
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()


async def raw_call(reactor: Any, endpoint: str, command: Any, **arguments: Any) -> Any:
    """
    One AMP call on a new connection to the client endpoint string
    C{endpoint}, which is then closed.
    """
    protocol = amp.AMP()
    connecting: Deferred[amp.AMP] = connectProtocol(clientFromString(reactor, endpoint), protocol)
    connecting.addTimeout(TIMEOUT, reactor)
    await connecting
    try:
        answer: Deferred[Any] = protocol.callRemote(command, **arguments)
        answer.addTimeout(TIMEOUT, reactor)
        return await answer
    finally:
        if protocol.transport is not None:
            protocol.transport.loseConnection()


async def refused_call(reactor: Any, endpoint: str) -> BaseException:
    """
    The error of a C{WorkerUpdate} sent to C{endpoint}, which must fail.
    """
    try:
        answer = await raw_call(
            reactor, endpoint, WorkerUpdate, worker_id="w1", host="10.0.0.1", port=9000, capacity=2
        )
    except (SSL.Error, ConnectionClosed) as e:
        return e
    raise AssertionError(f"answered: {answer!r}")


@pytest_twisted.ensureDeferred
async def test_clients_with_certificate_register_and_dispatch(
    reactor: Any, served: Served, pki: PKI
) -> None:
    """
    L{SchedulerClient} with a certificate from the trusted CA registers a
    worker over C{mtls:}, and L{FrontendClient} gets it, over C{mtls:} too.
    """
    scheduler_port = await served.listen(pki.mtls(), served.listeners.scheduler.factory)
    frontend_port = await served.listen(pki.mtls(), served.listeners.frontend.factory)
    async with (
        SchedulerClient(
            reactor, pki.tls(scheduler_port, pki.client), call_timeout=TIMEOUT
        ) as scheduler,
        FrontendClient(
            reactor, pki.tls(frontend_port, pki.client), call_timeout=TIMEOUT
        ) as frontend,
    ):
        assert await scheduler.update("w1", "127.0.0.1", 9001, 1) is True
        assert await frontend.next_worker() == Worker("w1", "127.0.0.1", 9001)


@pytest_twisted.ensureDeferred
async def test_raw_amp_call_with_certificate(reactor: Any, served: Served, pki: PKI) -> None:
    """
    A plain AMP connection over Twisted's C{tls:} client endpoint with a
    client certificate of the trusted CA gets its answer.
    """
    port = await served.listen(pki.mtls(), served.listeners.scheduler.factory)
    answer = await raw_call(reactor, pki.tls(port, pki.client), Stats)
    assert answer["workers"] == 0


@pytest_twisted.ensureDeferred
async def test_certificate_from_other_ca_refused(reactor: Any, served: Served, pki: PKI) -> None:
    """
    A client certificate from a CA the listener does not trust fails the
    handshake: the call gets no answer and changes nothing.
    """
    port = await served.listen(pki.mtls(), served.listeners.scheduler.factory)
    error = await refused_call(reactor, pki.tls(port, pki.other_client))
    assert "unknown ca" in str(error)
    assert served.store.stats().workers == 0


@pytest_twisted.ensureDeferred
async def test_client_without_certificate_refused(reactor: Any, served: Served, pki: PKI) -> None:
    """
    A client without a certificate fails the handshake: the call gets no
    answer and changes nothing.
    """
    port = await served.listen(pki.mtls(), served.listeners.scheduler.factory)
    error = await refused_call(reactor, pki.tls(port))
    # The alert of TLS 1.3; TLS 1.2 has none more precise than this one.
    assert "certificate required" in str(error) or "handshake failure" in str(error)
    assert served.store.stats().workers == 0


@pytest_twisted.ensureDeferred
async def test_every_ca_of_the_file_trusted(reactor: Any, served: Served, pki: PKI) -> None:
    """
    With several CAs in C{caCerts}, a client certificate of the second one
    is accepted.
    """
    port = await served.listen(pki.mtls(ca=pki.both_cas), served.listeners.scheduler.factory)
    answer = await raw_call(reactor, pki.tls(port, pki.client), Stats)
    assert answer["workers"] == 0


@pytest_twisted.ensureDeferred
async def test_intermediate_sent_with_server_certificate(
    reactor: Any, served: Served, pki: PKI
) -> None:
    """
    A server certificate from an intermediate CA, with C{extraCertChain},
    is trusted by clients that know only the root.
    """
    port = await served.listen(
        pki.mtls(server=pki.chained_server, extra=f":extraCertChain={pki.intermediate}"),
        served.listeners.scheduler.factory,
    )
    answer = await raw_call(reactor, pki.tls(port, pki.client), Stats)
    assert answer["workers"] == 0


@pytest_twisted.ensureDeferred
async def test_system_trust_store_not_used(
    reactor: Any, served: Served, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Only C{caCerts} is trusted: a client certificate from a CA in OpenSSL's
    default trust store (C{SSL_CERT_FILE}, which a context that loads the
    default paths trusts) is refused.
    """
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.other_ca))
    port = await served.listen(pki.mtls(), served.listeners.scheduler.factory)
    error = await refused_call(reactor, pki.tls(port, pki.other_client))
    assert "unknown ca" in str(error)
