"""
Where the shared store is: its URL parsed into a L{StoreAddress}, and its
password, read from a file or the environment (never from the URL: a
command line is visible to every local user).

Accepted URLs::

    memory                                        the in-memory store (None)
    redis://HOST[:PORT][/DB]                      one Redis or Valkey server
    rediss://HOST[:PORT][/DB]                     the same over TLS
    redis+sentinel://HOST[:PORT],.../NAME[/DB]    the primary NAME, found by Sentinel
    rediss+sentinel://HOST[:PORT],.../NAME[/DB]   the same over TLS

C{PORT} defaults to 6379 (26379 for a sentinel), C{DB} to 0; an IPv6 host is
written in brackets (C{[::1]:6379}).
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

from attrs import field, frozen

#: The environment variable holding the store's password.
PASSWORD_ENV = "AMP_DISPATCH_STORE_PASSWORD"

#: The port of a Redis or Valkey server, and of a Sentinel, when the URL gives none.
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

#: The highest database number accepted (Redis's default C{databases} is 16;
#: servers may be configured with more).
MAX_DB = 1_000_000

_SCHEMES = {
    "redis": ("redis", False),
    "rediss": ("redis", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}

_NO_SECRETS = (
    "put the password in a file (--store-password-file) or the environment"
    f" ({PASSWORD_ENV}), not on the command line"
)

Host = Tuple[str, int]


def show_host(host: Host) -> str:
    """
    C{host:port} for logs and messages (an IPv6 address in brackets).
    """
    name, port = host
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


@frozen
class StoreAddress:
    """
    Where the shared store is, and how to log in to it.

    @ivar kind: C{"redis"} (one server, C{hosts} holds it) or C{"sentinel"}
        (C{hosts} are sentinels, which name the primary C{primary_name}).
    @ivar hosts: C{(host, port)} pairs.
    @ivar tls: whether to connect over TLS.
    @ivar db: the database number to C{SELECT}.
    @ivar primary_name: the name the sentinels monitor the primary by.
    @ivar username: the ACL user to log in as (with C{password}).
    @ivar password: the password; never shown by C{repr} (nor in logs).
    """

    kind: str
    hosts: Tuple[Host, ...]
    tls: bool = False
    db: int = 0
    primary_name: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """
        The address as a URL for logs: never the password (nor the user).
        """
        hosts = ",".join(show_host(host) for host in self.hosts)
        if self.kind == "sentinel":
            scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
            return f"{scheme}://{hosts}/{self.primary_name}/{self.db}"
        return f"{'rediss' if self.tls else 'redis'}://{hosts}/{self.db}"


def parse_store_url(
    url: str, password: Optional[str] = None, username: Optional[str] = None
) -> Optional[StoreAddress]:
    """
    The store a URL names (see the module's docstring), C{None} for
    C{memory}.

    @param password: the password to log in with (from
        L{read_store_password}).
    @param username: the ACL user to log in as, if not the default one.
    @raise ValueError: the URL is malformed, or holds a user or password;
        the message says what is wrong.
    """
    if url == "memory":
        return None
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"store URL {url!r}: give 'memory' or a redis:// URL")
    if scheme.lower() not in _SCHEMES:
        known = ", ".join(f"{name}://" for name in _SCHEMES)
        raise ValueError(f"store URL {url!r}: unknown scheme {scheme!r} (known: {known})")
    kind, tls = _SCHEMES[scheme.lower()]
    if "?" in rest or "#" in rest:
        raise ValueError(f"store URL {url!r}: no query or fragment is accepted")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        # Not the URL itself: it holds the secret, and errors are logged.
        raise ValueError(f"the store URL holds a user or password: {_NO_SECRETS}")
    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    hosts = tuple(_parse_host(url, part, default_port) for part in netloc.split(","))
    if kind == "redis" and len(hosts) > 1:
        raise ValueError(f"store URL {url!r}: one host only (several are for redis+sentinel://)")
    segments = path.split("/") if path else []
    primary_name: Optional[str] = None
    if kind == "sentinel":
        if not segments or not segments[0]:
            raise ValueError(
                f"store URL {url!r}: missing the primary's name"
                " (redis+sentinel://HOST:PORT,.../NAME[/DB])"
            )
        primary_name = segments.pop(0)
    if len(segments) > 1:
        raise ValueError(f"store URL {url!r}: unexpected path {'/'.join(segments[1:])!r}")
    db = _parse_db(url, segments[0]) if segments and segments[0] else 0
    return StoreAddress(
        kind=kind,
        hosts=hosts,
        tls=tls,
        db=db,
        primary_name=primary_name,
        username=username,
        password=password,
    )


def _parse_host(url: str, text: str, default_port: int) -> Host:
    if not text:
        raise ValueError(f"store URL {url!r}: missing host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"store URL {url!r}: unclosed '[' in host {text!r}")
        name, after = text[1:end], text[end + 1 :]
        if not name or ":" not in name:
            raise ValueError(f"store URL {url!r}: not an IPv6 address in brackets: {text!r}")
        if after and not after.startswith(":"):
            raise ValueError(f"store URL {url!r}: unexpected {after!r} after host {text!r}")
        port_text = after[1:] if after else None
    else:
        name, colon, port_text_or_empty = text.partition(":")
        if ":" in port_text_or_empty:
            raise ValueError(
                f"store URL {url!r}: write an IPv6 host in brackets ([::1]:6379), not {text!r}"
            )
        if not name:
            raise ValueError(f"store URL {url!r}: missing host in {text!r}")
        port_text = port_text_or_empty if colon else None
    if port_text is None:
        return name, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"store URL {url!r}: bad port {port_text!r} (1-65535)")
    return name, int(port_text)


def _parse_db(url: str, text: str) -> int:
    if not text.isdigit() or int(text) > MAX_DB:
        raise ValueError(f"store URL {url!r}: bad database number {text!r} (0-{MAX_DB})")
    return int(text)


def read_store_password(password_file: Optional[str], environ: Mapping[str, str]) -> Optional[str]:
    """
    The store's password: the first line of C{password_file} (without its
    line end) if given, else C{$AMP_DISPATCH_STORE_PASSWORD} (without a line
    end) if set and not empty, else C{None}.

    Read once at start-up (a blocking read of a small local file).

    @raise ValueError: the file cannot be read, or its first line is empty.
    """
    if password_file is not None:
        try:
            with open(password_file, encoding="utf-8") as opened:
                first = opened.readline()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ValueError(
                f"cannot read the store password file {password_file!r}: {reason}"
            ) from None
        password = first.rstrip("\r\n")
        if not password:
            raise ValueError(f"the store password file {password_file!r} starts with an empty line")
        return password
    # A line end, as `export VAR="$(cat file)"` or an env file may leave one,
    # is not part of the password (as with the file's first line).
    return environ.get(PASSWORD_ENV, "").rstrip("\r\n") or None


__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SENTINEL_PORT",
    "PASSWORD_ENV",
    "Host",
    "StoreAddress",
    "parse_store_url",
    "read_store_password",
    "show_host",
]
