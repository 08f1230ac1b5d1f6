"""
Pre-encoded requests and minimal answer parsers for AMP and RESP.  Standard
library only (the load generator runs under a bare C{pypy3}).

AMP: a box is a run of [2-byte big-endian key length, key, 2-byte value
length, value], ended by an empty key (C{\\x00\\x00}).  A call carries C{_ask}
(a tag, here a hex counter); its answer carries C{_answer} or C{_error} with
the same tag.

RESP: a command is an array of bulk strings; answers come back in order.
"""

from __future__ import annotations

import hashlib
from typing import List, Tuple

#: Tags are taken from a ring this size on each connection: a connection
#: never has more calls in flight than this.
TAG_RING = 1 << 16
TAG_MASK = TAG_RING - 1

# ---------------------------------------------------------------------- AMP


def amp_pair(key: bytes, value: bytes) -> bytes:
    return len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value


def amp_box(pairs: List[Tuple[bytes, bytes]]) -> bytes:
    return b"".join(amp_pair(k, v) for k, v in pairs) + b"\x00\x00"


def amp_tag(n: int) -> bytes:
    return b"%x" % (n,)


#: C{NextWorker} with no argument (the default pool, no waiting), up to its tag.
NEXT_WORKER_HEAD = amp_pair(b"_command", b"NextWorker")


def next_worker_requests() -> Tuple[List[bytes], List[bytes]]:
    """
    Every C{NextWorker} box a connection sends, one per tag of the ring, and
    the tags.
    """
    tags = [amp_tag(n) for n in range(TAG_RING)]
    boxes = [NEXT_WORKER_HEAD + amp_pair(b"_ask", tag) + b"\x00\x00" for tag in tags]
    return boxes, tags


def worker_id(n: int) -> bytes:
    return b"w%07d" % (n,)


def worker_host(n: int) -> bytes:
    return b"10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


WORKER_PORT = 9000


def worker_update(tag: bytes, n: int, capacity: int) -> bytes:
    """
    A C{WorkerUpdate} box for worker number C{n} (no seq, no ttl: always
    accepted, never expires).
    """
    return amp_box(
        [
            (b"_command", b"WorkerUpdate"),
            (b"_ask", tag),
            (b"worker_id", worker_id(n)),
            (b"host", worker_host(n)),
            (b"port", b"%d" % (WORKER_PORT,)),
            (b"capacity", b"%d" % (capacity,)),
        ]
    )


class AmpAnswers:
    """
    Answer tags parsed out of a stream of AMP boxes.  C{feed} returns the tags
    of the answered calls, in the order they came; failed calls' tags are kept
    in C{errors} too, their codes counted in C{codes}.
    """

    __slots__ = ("buf", "codes", "error_count")

    def __init__(self) -> None:
        self.buf = b""
        self.codes: dict[bytes, int] = {}
        self.error_count = 0

    def feed(self, data: bytes) -> List[bytes]:
        buf = self.buf + data if self.buf else data
        end = len(buf)
        tags: List[bytes] = []
        i = 0
        while True:
            start = i
            tag = b""
            code = b""
            failed = False
            complete = False
            while i + 2 <= end:
                klen = (buf[i] << 8) | buf[i + 1]
                if klen == 0:
                    i += 2
                    complete = True
                    break
                kend = i + 2 + klen
                if kend + 2 > end:
                    break
                vend = kend + 2 + ((buf[kend] << 8) | buf[kend + 1])
                if vend > end:
                    break
                if klen == 7:
                    if buf[i + 2 : kend] == b"_answer":
                        tag = buf[kend + 2 : vend]
                elif klen == 6:
                    if buf[i + 2 : kend] == b"_error":
                        tag = buf[kend + 2 : vend]
                        failed = True
                elif klen == 11 and buf[i + 2 : kend] == b"_error_code":
                    code = buf[kend + 2 : vend]
                i = vend
            if not complete:
                self.buf = buf[start:]
                return tags
            if failed:
                self.error_count += 1
                self.codes[code] = self.codes.get(code, 0) + 1
            tags.append(tag)


# --------------------------------------------------------------------- RESP

#: The "next worker" script: the member with the highest score (free slots),
#: if any is above 0, takes a slot.  Members are "worker_id|host|port".
NEXT_WORKER_LUA = (
    "local r = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES'); "
    "if #r == 0 or tonumber(r[2]) <= 0 then return nil end; "
    "redis.call('ZINCRBY', KEYS[1], -1, r[1]); return r[1]"
)
NEXT_WORKER_SHA = hashlib.sha1(NEXT_WORKER_LUA.encode()).hexdigest()
REDIS_KEY = b"amp-bench:workers"


def resp_command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % (len(args),)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def evalsha_request() -> bytes:
    return resp_command(b"EVALSHA", NEXT_WORKER_SHA.encode(), b"1", REDIS_KEY)


def redis_member(n: int) -> bytes:
    return b"%s|%s|%d" % (worker_id(n), worker_host(n), WORKER_PORT)


def zadd_request(first: int, count: int, capacity: int) -> bytes:
    args = [b"ZADD", REDIS_KEY]
    score = b"%d" % (capacity,)
    for n in range(first, first + count):
        args.append(score)
        args.append(redis_member(n))
    return resp_command(*args)


class RespAnswers:
    """
    Counts the answers in a stream of RESP replies (simple and bulk strings,
    integers, errors; no arrays).  C{feed} returns how many replies completed;
    C{nil} counts null bulk strings, C{error_count} error replies.
    """

    __slots__ = ("buf", "error_count", "last_error", "nil")

    def __init__(self) -> None:
        self.buf = b""
        self.nil = 0
        self.error_count = 0
        self.last_error = b""

    def feed(self, data: bytes) -> int:
        buf = self.buf + data if self.buf else data
        end = len(buf)
        i = 0
        count = 0
        while i < end:
            j = buf.find(b"\r\n", i)
            if j < 0:
                break
            kind = buf[i]
            if kind == 36:  # $
                size = int(buf[i + 1 : j])
                if size < 0:
                    self.nil += 1
                    nxt = j + 2
                else:
                    nxt = j + 4 + size
                    if nxt > end:
                        break
            elif kind == 45:  # -
                self.error_count += 1
                self.last_error = buf[i + 1 : j]
                nxt = j + 2
            elif kind == 43 or kind == 58:  # + :
                nxt = j + 2
            else:
                raise ValueError(f"unexpected RESP reply {buf[i : j + 2]!r}")
            count += 1
            i = nxt
        self.buf = buf[i:]
        return count
