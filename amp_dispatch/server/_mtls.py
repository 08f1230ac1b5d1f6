"""
The C{mtls:} server endpoint strings: TLS listeners that require a client
certificate and verify it against given certificate authorities.

Twisted's C{ssl:} server endpoint strings cannot ask for client certificates
(twisted/twisted#6757).  C{mtls:} takes the same parameters as C{ssl:} plus
C{caCerts}, a PEM file of one or more CA certificates::

    mtls:8751:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem:caCerts=ca.pem

A client must present a certificate that chains up to one of those CAs (and
only those: the system's trust store is not used); a client with no
certificate, or with one from another CA, fails the TLS handshake and its
connection is closed before any application data is exchanged.

Parameters (all but the port are keywords):

  - the port (positional; C{0}: any free port);
  - C{interface}: the IPv4 address to listen on (default: all);
  - C{backlog}: the listen queue length (default 50);
  - C{certKey}: the server's certificate (PEM); C{privateKey}: its private
    key (PEM, not encrypted).  One file holding both may be given as either
    (the other defaults to it);
  - C{caCerts}: the CA certificates client certificates must chain up to
    (PEM, required);
  - C{extraCertChain}: intermediate certificates sent with the server's
    certificate (PEM, optional);
  - C{dhParameters}: Diffie-Hellman parameters (PEM) for the C{DHE} ciphers
    of TLS 1.2 (optional, as for C{ssl:}).

A bad string (a missing or unknown parameter, an unreadable file, a file
without what it should hold) raises L{ValueError} naming the parameter.

The parser is registered as a Twisted plugin by
C{twisted/plugins/amp_dispatch_mtls.py}, so L{serverFromString} (and with it
C{amp-dispatch serve} and C{twist amp-dispatch}) knows the prefix.  TLS needs
pyOpenSSL: C{pip install 'amp-dispatch[tls]'}.  It is imported only when a
C{mtls:} string is parsed, so the plugin loads without it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar

from twisted.internet.interfaces import (
    IReactorCore,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from twisted.python.filepath import FilePath
from zope.interface import implementer

if TYPE_CHECKING:
    from cryptography import x509
    from OpenSSL.crypto import PKey
    from twisted.internet.ssl import CertificateOptions

__all__ = ["PREFIX", "MutualTLSServerParser", "mutual_tls_options"]

#: The endpoint string prefix.
PREFIX = "mtls"

#: The keyword parameters of an C{mtls:} string.
PARAMETERS = (
    "port",
    "interface",
    "backlog",
    "privateKey",
    "certKey",
    "caCerts",
    "extraCertChain",
    "dhParameters",
)

_T = TypeVar("_T")


def _error(parameter: str, message: str) -> ValueError:
    return ValueError(f"{PREFIX}: {parameter}: {message}")


def _read(parameter: str, path: str) -> bytes:
    """
    The content of the file named by C{parameter}.
    """
    try:
        return FilePath(path).getContent()
    except OSError as e:
        raise _error(parameter, f"cannot read {path!r}: {e.strerror or e}") from None


def _load(parameter: str, path: str, what: str, load: Callable[[bytes], _T]) -> _T:
    """
    C{load} the content of the file named by C{parameter}; a file C{load}
    refuses raises a L{ValueError} saying it holds no C{what}.
    """
    data = _read(parameter, path)
    try:
        return load(data)
    except (ValueError, TypeError) as e:
        raise _error(parameter, f"{path!r} holds no {what} ({e})") from None


def _load_certificates(parameter: str, path: str) -> List[x509.Certificate]:
    """
    Every certificate of a PEM file, in file order (at least one).
    """
    from cryptography import x509

    return _load(parameter, path, "PEM certificate", x509.load_pem_x509_certificates)


def _load_private_key(parameter: str, path: str) -> Tuple[PKey, bytes]:
    """
    The private key of a PEM file (not encrypted: the server must start
    unattended) and its public key as DER.
    """
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from OpenSSL.crypto import PKey

    def load(data: bytes) -> Tuple[PKey, bytes]:
        if b"-----BEGIN" not in data:
            # Never mind DER or garbage: the files are PEM, as for ssl:.
            raise ValueError("no PEM block")
        key: Any = load_pem_private_key(data, password=None)
        # TypeError for key types TLS cannot use (X25519, DH ...).
        return PKey.from_cryptography_key(key), _public_der(key.public_key())

    return _load(parameter, path, "unencrypted PEM private key", load)


def _public_der(key: Any) -> bytes:
    """
    A public key (of a certificate or a private key) as DER, to compare.
    """
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der: bytes = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return der


def mutual_tls_options(
    *,
    certKey: Optional[str] = None,
    privateKey: Optional[str] = None,
    caCerts: Optional[str] = None,
    extraCertChain: Optional[str] = None,
    dhParameters: Optional[str] = None,
) -> CertificateOptions:
    """
    TLS server options that present C{certKey}'s certificate with
    C{privateKey}'s key and require a client certificate issued by one of the
    CAs in C{caCerts} (file paths, as in an C{mtls:} string).

    The client's certificate is required (OpenSSL's C{VERIFY_PEER |
    VERIFY_FAIL_IF_NO_PEER_CERT}) and verified against exactly the CAs of
    C{caCerts}: Twisted adds them to the context's own, otherwise empty,
    certificate store.

    @raise ValueError: a parameter is missing or names a file that cannot be
        read or does not hold what it should; the message names the
        parameter.
    """
    try:
        from OpenSSL import SSL, crypto
        from twisted.internet import ssl
    except ImportError as e:
        raise ValueError(
            f"{PREFIX}: TLS needs pyOpenSSL ({e}): pip install 'amp-dispatch[tls]'"
        ) from None

    if certKey is None and privateKey is None:
        raise _error("certKey", "missing: give the server certificate (certKey=) and its key")
    if caCerts is None:
        raise _error("caCerts", "missing: give the CA certificates client certificates need")
    cert_path = certKey if certKey is not None else privateKey
    key_path = privateKey if privateKey is not None else certKey
    assert cert_path is not None and key_path is not None

    certificate = _load_certificates("certKey", cert_path)[0]
    key, public_der = _load_private_key("privateKey", key_path)
    if public_der != _public_der(certificate.public_key()):
        raise _error(
            "privateKey", f"{key_path!r} is not the key of the certificate in {cert_path!r}"
        )
    authorities = _load_certificates("caCerts", caCerts)
    chain = None if extraCertChain is None else _load_certificates("extraCertChain", extraCertChain)
    dh = None
    if dhParameters is not None:
        _check_dh_parameters(dhParameters)
        dh = ssl.DiffieHellmanParameters.fromFile(FilePath(dhParameters))

    options = ssl.CertificateOptions(
        privateKey=key,
        certificate=crypto.X509.from_cryptography(certificate),
        extraCertChain=None if chain is None else [crypto.X509.from_cryptography(c) for c in chain],
        # A trust root implies verify=True and requireCertificate=True.
        trustRoot=ssl.trustRootFromCertificates(
            [ssl.Certificate(crypto.X509.from_cryptography(ca)) for ca in authorities]
        ),
        dhParameters=dh,
    )
    with warnings.catch_warnings():
        # Make the context now, so whatever OpenSSL refuses fails here and not
        # at the first connection; the listener uses this one.  pyOpenSSL
        # 24.3+ deprecates the X509 and PKey objects Twisted's options take
        # (as Twisted's own ssl: strings give them), once per context.
        warnings.filterwarnings(
            "ignore", r"Passing pyOpenSSL (X509|PKey) objects is deprecated", DeprecationWarning
        )
        try:
            options.getContext()
        except (crypto.Error, SSL.Error) as e:
            raise ValueError(f"{PREFIX}: OpenSSL refuses the TLS settings: {e}") from None
    return options


def _check_dh_parameters(path: str) -> None:
    """
    Check that C{path} holds Diffie-Hellman parameters OpenSSL takes.
    """
    from OpenSSL import SSL

    data = _read("dhParameters", path)
    try:
        if b"-----BEGIN DH PARAMETERS-----" not in data:
            raise ValueError("no DH PARAMETERS block")
        SSL.Context(SSL.TLS_METHOD).load_tmp_dh(path)
    except (ValueError, SSL.Error) as e:
        raise _error("dhParameters", f"{path!r} holds no PEM DH parameters ({e})") from None


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _integer(parameter: str, value: str, low: int, high: Optional[int] = None) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        span = f"within {low}..{high}" if high is not None else f">= {low}"
        raise _error(parameter, f"must be an integer {span}, not {value!r}")
    return number


def _arguments(args: Tuple[object, ...], kwargs: Dict[str, object]) -> Dict[str, str]:
    """
    The parameters of an C{mtls:} string by name, checked for unknown or
    repeated ones.
    """
    named = {name: _text(value) for name, value in kwargs.items()}
    unknown = sorted(set(named) - set(PARAMETERS))
    if unknown:
        raise ValueError(
            f"{PREFIX}: unknown parameter {unknown[0]!r} (known: {', '.join(PARAMETERS[1:])})"
        )
    if len(args) > 1:
        extra = ":".join(_text(a) for a in args[1:])
        raise ValueError(
            f"{PREFIX}: one positional parameter (the port), then name=value: {extra!r}"
        )
    if args:
        if "port" in named:
            raise _error("port", "given twice")
        named["port"] = _text(args[0])
    if "port" not in named:
        raise _error("port", "missing: mtls:PORT:...")
    return named


@implementer(IPlugin, IStreamServerEndpointStringParser)
class MutualTLSServerParser:
    """
    The C{mtls:} server endpoint string parser: an L{SSL4ServerEndpoint} whose
    TLS options require and verify a client certificate (see the module
    docstring for the parameters).
    """

    prefix = PREFIX

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        """
        The endpoint of an C{mtls:} string, with the reactor given by
        L{serverFromString}.

        @raise ValueError: the string is wrong (the message names the
            parameter).
        """
        from twisted.internet.endpoints import SSL4ServerEndpoint

        named = _arguments(args, kwargs)
        port = _integer("port", named["port"], 0, 65535)
        backlog = _integer("backlog", named.get("backlog", "50"), 0)
        options = mutual_tls_options(
            certKey=named.get("certKey"),
            privateKey=named.get("privateKey"),
            caCerts=named.get("caCerts"),
            extraCertChain=named.get("extraCertChain"),
            dhParameters=named.get("dhParameters"),
        )
        endpoint: IStreamServerEndpoint = SSL4ServerEndpoint(
            reactor, port, options, backlog=backlog, interface=named.get("interface", "")
        )
        return endpoint
