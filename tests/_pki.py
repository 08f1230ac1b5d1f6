"""
Certificates for the C{mtls:} tests, made at run time with C{trustme}: a CA
whose client certificates the dispatcher accepts, a server certificate for
127.0.0.1 and localhost, client certificates from that CA and from another
one, and a server certificate from an intermediate CA.

The files are PEM, written to a directory, and L{PKI} builds the endpoint
strings that use them: C{mtls:} for the dispatcher, Twisted's stock C{tls:}
for clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest
import trustme
from attrs import frozen
from twisted.internet.endpoints import quoteStringArgument

#: The RFC 7919 C{ffdhe2048} group: valid DH parameters that take no time to
#: make (C{openssl genpkey -genparam -algorithm DH -pkeyopt dh_param:ffdhe2048}).
FFDHE2048 = b"""\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


#: Warnings of TLS clients, for the modules that make them.  Twisted's tls:
#: client endpoints hand pyOpenSSL the X509 and PKey objects that pyOpenSSL
#: 24.3+ deprecates, once per client connection with a certificate (the
#: mtls: listener silences its own, once per listener).  Twisted before 26
#: (PyPy 3.9's venv has 25.5) sets an info callback on its client context
#: after pyOpenSSL 25's cipher check used it, which pyOpenSSL warns about.
TLS_CLIENT_WARNINGS: List[pytest.MarkDecorator] = [
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Attempting to mutate a Context:DeprecationWarning"),
]


def _q(path: Path) -> str:
    return str(quoteStringArgument(str(path)))


@frozen
class Identity:
    """
    A certificate and its private key, in two PEM files.
    """

    cert: Path
    key: Path


@frozen
class PKI:
    """
    The certificate files of one test module, and endpoint strings using them.
    """

    directory: Path
    #: The CA the dispatcher trusts for client certificates (its C{caCerts}).
    ca: Path
    #: A directory holding only L{ca}: the C{trustRoots} of C{tls:} clients.
    roots: Path
    #: The dispatcher's certificate (127.0.0.1, localhost), issued by L{ca}.
    server: Identity
    #: L{server}'s key and certificate in one file.
    server_combined: Path
    #: A client certificate issued by L{ca}.
    client: Identity
    #: Another CA, which the dispatcher does not trust.
    other_ca: Path
    #: A client certificate issued by L{other_ca}.
    other_client: Identity
    #: L{other_ca} then L{ca} in one file.
    both_cas: Path
    #: A server certificate issued by an intermediate CA of L{ca}.
    chained_server: Identity
    #: That intermediate CA's certificate (the C{extraCertChain}).
    intermediate: Path
    #: Valid Diffie-Hellman parameters.
    dh: Path

    def mtls(
        self,
        port: int = 0,
        *,
        server: Optional[Identity] = None,
        ca: Optional[Path] = None,
        extra: str = "",
    ) -> str:
        """
        The C{mtls:} server string of a loopback listener with L{server}'s
        certificate (or C{server}'s) that trusts client certificates of
        L{ca} (or C{ca}); C{extra} is appended (C{":name=value..."}).
        """
        identity = self.server if server is None else server
        return (
            f"mtls:{port}:interface=127.0.0.1"
            f":privateKey={_q(identity.key)}:certKey={_q(identity.cert)}"
            f":caCerts={_q(self.ca if ca is None else ca)}{extra}"
        )

    def tls(self, port: int, client: Optional[Identity] = None) -> str:
        """
        The C{tls:} client string of 127.0.0.1:C{port}, trusting L{ca} for
        the server, with C{client}'s certificate (none if C{None}).
        """
        endpoint = f"tls:127.0.0.1:{port}:trustRoots={_q(self.roots)}"
        if client is not None:
            endpoint += f":certificate={_q(client.cert)}:privateKey={_q(client.key)}"
        return endpoint


def _identity(directory: Path, name: str, leaf: trustme.LeafCert) -> Identity:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return Identity(cert, key)


def make_pki(directory: Path) -> PKI:
    """
    Make a fresh CA, other CA, intermediate CA and their certificates in
    C{directory}.
    """
    ca, other = trustme.CA(), trustme.CA()
    intermediate = ca.create_child_ca()
    ca_path, other_path = directory / "ca.pem", directory / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    other.cert_pem.write_to_path(str(other_path))
    roots = directory / "roots"
    roots.mkdir()
    ca.cert_pem.write_to_path(str(roots / "ca.pem"))
    both = directory / "both-cas.pem"
    both.write_bytes(other.cert_pem.bytes() + ca.cert_pem.bytes())
    server_leaf = ca.issue_cert("127.0.0.1", "localhost")
    server = _identity(directory, "server", server_leaf)
    combined = directory / "server-combined.pem"
    server_leaf.private_key_and_cert_chain_pem.write_to_path(str(combined))
    intermediate_path = directory / "intermediate.pem"
    intermediate.cert_pem.write_to_path(str(intermediate_path))
    dh = directory / "dh.pem"
    dh.write_bytes(FFDHE2048)
    return PKI(
        directory=directory,
        ca=ca_path,
        roots=roots,
        server=server,
        server_combined=combined,
        client=_identity(directory, "client", ca.issue_cert("client.example")),
        other_ca=other_path,
        other_client=_identity(directory, "other-client", other.issue_cert("client.example")),
        both_cas=both,
        chained_server=_identity(
            directory, "chained-server", intermediate.issue_cert("127.0.0.1", "localhost")
        ),
        intermediate=intermediate_path,
        dh=dh,
    )
