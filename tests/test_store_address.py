"""
Where the store is (L{amp_dispatch.store._address}): every URL form
accepted, every refusal and its message, and the password from a file or
the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import pytest

from amp_dispatch.store._address import (
    PASSWORD_ENV,
    StoreAddress,
    parse_store_url,
    read_store_password,
)


def test_memory() -> None:
    """
    C{memory} is the in-memory store: no address.
    """
    assert parse_store_url("memory") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6380/2", StoreAddress("redis", (("127.0.0.1", 6380),), db=2)),
        ("redis://store", StoreAddress("redis", (("store", 6379),))),
        ("redis://store/", StoreAddress("redis", (("store", 6379),))),
        ("redis://store:7000", StoreAddress("redis", (("store", 7000),))),
        ("REDIS://store/15", StoreAddress("redis", (("store", 6379),), db=15)),
        (
            "rediss://store.example:6390/1",
            StoreAddress("redis", (("store.example", 6390),), True, 1),
        ),
        ("redis://[::1]:6379/0", StoreAddress("redis", (("::1", 6379),))),
        ("redis://[fe80::1]", StoreAddress("redis", (("fe80::1", 6379),))),
        (
            "redis+sentinel://s1:26380,s2,[::1]:26381/mymaster",
            StoreAddress(
                "sentinel",
                (("s1", 26380), ("s2", 26379), ("::1", 26381)),
                primary_name="mymaster",
            ),
        ),
        (
            "redis+sentinel://s1/mymaster/4",
            StoreAddress("sentinel", (("s1", 26379),), db=4, primary_name="mymaster"),
        ),
        (
            "rediss+sentinel://s1,s2/main/",
            StoreAddress("sentinel", (("s1", 26379), ("s2", 26379)), tls=True, primary_name="main"),
        ),
    ],
)
def test_accepted(url: str, expected: StoreAddress) -> None:
    """
    Every accepted form, with its default ports and database.
    """
    assert parse_store_url(url) == expected


def test_password_and_username_given_apart() -> None:
    """
    The password and user come apart from the URL; C{repr} and the display
    string never show the password.
    """
    address = parse_store_url("redis://h:1/3", password="s3cret", username="app")
    assert address == StoreAddress("redis", (("h", 1),), db=3, username="app", password="s3cret")
    assert "s3cret" not in repr(address)
    assert "s3cret" not in address.display


@pytest.mark.parametrize(
    ("url", "display"),
    [
        ("redis://h", "redis://h:6379/0"),
        ("rediss://[::1]:7/2", "rediss://[::1]:7/2"),
        ("redis+sentinel://a,b:5/m", "redis+sentinel://a:26379,b:5/m/0"),
        ("rediss+sentinel://a/m/1", "rediss+sentinel://a:26379/m/1"),
    ],
)
def test_display(url: str, display: str) -> None:
    """
    The display string is a complete URL of the same store.
    """
    address = parse_store_url(url)
    assert address is not None
    assert address.display == display
    assert parse_store_url(display) == address


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw@host:6379/0",
        "redis://user:pw@host/0",
        "redis://user@host",
        "rediss+sentinel://u:p@s1,s2/m",
    ],
)
def test_secrets_in_url_refused(url: str) -> None:
    """
    A user or password in the URL is refused, saying where it belongs
    instead, without repeating it.
    """
    with pytest.raises(ValueError) as caught:
        parse_store_url(url)
    message = str(caught.value)
    assert "holds a user or password" in message
    assert "--store-password-file" in message
    assert PASSWORD_ENV in message
    assert "pw" not in message, "the secret is not repeated"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "give 'memory' or a redis:// URL"),
        ("localhost:6379", "give 'memory' or a redis:// URL"),
        ("memcached://h", "unknown scheme 'memcached'"),
        ("http://h", "unknown scheme 'http'"),
        ("redis://", "missing host"),
        ("redis:///0", "missing host"),
        ("redis://:6379/0", "missing host"),
        ("redis://h:0", "bad port '0'"),
        ("redis://h:65536", "bad port '65536'"),
        ("redis://h:x", "bad port 'x'"),
        ("redis://h:", "bad port ''"),
        ("redis://h:-1", "bad port '-1'"),
        ("redis://h/x", "bad database number 'x'"),
        ("redis://h/-1", "bad database number '-1'"),
        ("redis://h/99999999", "bad database number '99999999'"),
        ("redis://h/0/1", "unexpected path '1'"),
        ("redis://h/0?timeout=1", "no query or fragment"),
        ("redis://h#x", "no query or fragment"),
        ("redis://a,b/0", "one host only"),
        ("redis://::1/0", "write an IPv6 host in brackets"),
        ("redis://[::1/0", "unclosed '['"),
        ("redis://[]:1", "not an IPv6 address"),
        ("redis://[::1]x", "unexpected 'x'"),
        ("redis://h,,k/0", "missing host"),
        ("redis+sentinel://s1,s2", "missing the primary's name"),
        ("redis+sentinel://s1/", "missing the primary's name"),
        ("redis+sentinel://s1,,s2/m", "missing host"),
        ("redis+sentinel://s1/m/x", "bad database number 'x'"),
        ("redis+sentinel://s1/m/1/2", "unexpected path '2'"),
        ("redis+sentinel://s1:99999/m", "bad port '99999'"),
    ],
)
def test_malformed(url: str, why: str) -> None:
    """
    Each malformed URL is refused with a message naming what is wrong.
    """
    with pytest.raises(ValueError) as caught:
        parse_store_url(url)
    assert why in str(caught.value)
    assert repr(url) in str(caught.value)


def test_password_from_file(tmp_path: Path) -> None:
    """
    The file's first line, without its line end, wins over the environment.
    """
    secret = tmp_path / "password"
    secret.write_text("s3cret pass\r\nsecond line\n", encoding="utf-8")
    assert read_store_password(str(secret), {PASSWORD_ENV: "env"}) == "s3cret pass"
    secret.write_text("no newline", encoding="utf-8")
    assert read_store_password(str(secret), {}) == "no newline"


@pytest.mark.parametrize("content", ["", "\n", "\nsecond"])
def test_password_file_empty(tmp_path: Path, content: str) -> None:
    """
    A file whose first line is empty is refused (not taken as no password).
    """
    secret = tmp_path / "password"
    secret.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="starts with an empty line"):
        read_store_password(str(secret), {})


def test_password_file_missing(tmp_path: Path) -> None:
    """
    A missing or unreadable file is refused, naming its path and why.
    """
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError) as caught:
        read_store_password(missing, {PASSWORD_ENV: "env"})
    assert repr(missing) in str(caught.value)
    assert "No such file" in str(caught.value)
    with pytest.raises(ValueError, match="cannot read the store password file"):
        read_store_password(str(tmp_path), {})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({PASSWORD_ENV: "from-env"}, "from-env"),
        ({PASSWORD_ENV: "from-env\n"}, "from-env"),
        ({PASSWORD_ENV: "\r\n"}, None),
        ({PASSWORD_ENV: ""}, None),
        ({}, None),
    ],
)
def test_password_from_environment(environ: Dict[str, str], expected: Optional[str]) -> None:
    """
    Without a file, the environment variable (without a line end, if set
    and not empty), else no password.
    """
    assert read_store_password(None, environ) == expected
