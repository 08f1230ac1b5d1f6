"""
The fuzzer's boxes: valid calls of both listeners, mutated (missing, extra
and duplicate arguments, nasty values: integers of thousands of digits,
NaN/inf/-0, non-UTF-8, control characters, 64 KB values; unknown commands,
fake answers, empty and C{_ask}-only boxes), and framing damage (random
bytes, bit flips, wrong lengths, oversize keys, truncated boxes).

Boxes are made once into a L{Pool} of chunks, each a run of boxes sent in one
write and reused in rotation, and a list of framing-damaged boxes, each sent
last on its connection.  One front-end chunk in 8 has a damaged box in its
middle too; the scheduler chunks hold well-framed boxes only, none of which
would change the worker list (L{could_change_state}, with the schema's own
argument parsers), so that after fuzzing the worker list must be exactly
what the valid commands made it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from amp_dispatch_commands import WorkerGone, WorkerUpdate

from .clean import CLEAN_POOL
from .wire import Box, BoxParser, amp_box, amp_pair

Pairs = List[Tuple[bytes, bytes]]

#: Pools the fuzzer names; each gets a worker with no free slot before it runs.
FUZZ_POOLS = ["default", "fz", "gpu", "p1"]
#: Worker ids the scheduler fuzz names (each pool's fixture worker among them).
FUZZ_IDS = [f"fx-{pool}" for pool in FUZZ_POOLS] + ["fz-1", "fz-2", "w"]

_TEXT_NASTY: List[bytes] = [
    b"",
    b"\xff\xfe\xfd",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # a UTF-16 surrogate in UTF-8
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"a\x00b",
    b"\x1b[31mred\x1b[0m",
    b"\x7f",
    "\u0085next".encode(),
    b"x" * 256,
    "\u00e9".encode() * 128,  # 256 bytes, 128 characters
    "\U0001f600".encode() * 64,  # 256 bytes, 64 characters
    b"\r\n\t",
    b"%s%n%x",
    b"' OR 1=1 --",
    b"../../etc/passwd",
]
_INT_NASTY: List[bytes] = [
    b"9" * 3000,
    b"-" + b"9" * 2000,
    b"1" * 4300,
    b"1" * 4301,
    b"9" * 10000,
    b"0" * 5000 + b"1",
    b"-1",
    b"-0",
    b"0",
    b"65536",
    b"18446744073709551616",
    b"1e3",
    b"0x10",
    b" 7",
    b"7 ",
    b"1_000",
    b"\xd9\xa3",  # Arabic-Indic digit three
    b"",
    b"abc",
]
_FLOAT_NASTY: List[bytes] = [
    b"nan",
    b"NaN",
    b"-nan",
    b"inf",
    b"-inf",
    b"Infinity",
    b"-0",
    b"-0.0",
    b"1e300",
    b"1e308",
    b"1.8e308",
    b"1e-320",
    b"-1e-300",
    b"0x1p3",
    b"9" * 400,
    b"1" + b"0" * 5000,
    b"",
    b"1,5",
    b" 1",
]
_COMMANDS_UNKNOWN: List[bytes] = [
    b"",
    b"nextworker",
    b"NextWorker ",
    b"NextWorkerX",
    b"Stats\x00",
    b"_command",
    b"\xff\xfe",
    b"X" * 255,
    b"Y" * 4000,
    b"Z" * 65535,
]


def _value_pool(kind: str) -> List[bytes]:
    if kind == "int":
        return _INT_NASTY
    if kind == "float":
        return _FLOAT_NASTY
    return _TEXT_NASTY


#: Arguments of each command and their kinds (int, float, text).
_ARGUMENTS: Dict[bytes, List[Tuple[bytes, str]]] = {
    b"NextWorker": [(b"pool", "text"), (b"timeout", "float")],
    b"Stats": [],
    b"WorkerUpdate": [
        (b"worker_id", "text"),
        (b"host", "text"),
        (b"port", "int"),
        (b"capacity", "int"),
        (b"pool", "text"),
        (b"seq", "int"),
        (b"ttl", "float"),
    ],
    b"WorkerGone": [(b"worker_id", "text")],
    b"ListWorkers": [(b"pool", "text"), (b"after", "text"), (b"limit", "int")],
}


class Generator:
    """
    Makes valid calls and mutates them, from one seeded random source.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tag = 0

    def next_tag(self) -> bytes:
        self.tag += 1
        return b"%x" % (self.tag,)

    # ------------------------------------------------------------ valid

    def valid_frontend(self) -> Pairs:
        r = self.rng
        if r.random() < 0.15:
            return [(b"_command", b"Stats"), (b"_ask", self.next_tag())]
        pairs: Pairs = [(b"_command", b"NextWorker"), (b"_ask", self.next_tag())]
        if r.random() < 0.7:
            pairs.append((b"pool", r.choice(FUZZ_POOLS).encode()))
        if r.random() < 0.3:
            pairs.append((b"timeout", repr(r.choice([0.0, 0.001, 0.05, 0.3, 2.0])).encode()))
        r.shuffle(pairs)
        return pairs

    def valid_scheduler(self) -> Pairs:
        r = self.rng
        command = r.choice(
            [b"WorkerUpdate", b"WorkerUpdate", b"WorkerGone", b"ListWorkers", b"Stats"]
        )
        pairs: Pairs = [(b"_command", command), (b"_ask", self.next_tag())]
        if command == b"WorkerUpdate":
            pairs += [
                (b"worker_id", r.choice(FUZZ_IDS).encode()),
                (b"host", b"10.0.0.%d" % r.randrange(256)),
                (b"port", b"%d" % r.randrange(1, 65536)),
                (b"capacity", b"%d" % r.randrange(0, 5)),
            ]
            if r.random() < 0.5:
                pairs.append((b"pool", r.choice(FUZZ_POOLS).encode()))
            if r.random() < 0.3:
                pairs.append((b"seq", b"%d" % r.randrange(100)))
            if r.random() < 0.3:
                pairs.append((b"ttl", repr(r.choice([0.0, 0.5, 30.0])).encode()))
        elif command == b"WorkerGone":
            pairs.append((b"worker_id", r.choice(FUZZ_IDS).encode()))
        elif command == b"ListWorkers":
            if r.random() < 0.5:
                pairs.append((b"pool", r.choice(FUZZ_POOLS).encode()))
            if r.random() < 0.3:
                pairs.append((b"after", r.choice(FUZZ_IDS).encode()))
            if r.random() < 0.5:
                pairs.append((b"limit", b"%d" % r.randrange(1, 501)))
        r.shuffle(pairs)
        return pairs

    # -------------------------------------------------------- mutations

    def mutate(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        """
        One to three mutations of a call's pairs (framing stays intact).
        """
        r = self.rng
        pairs = list(pairs)
        for _ in range(r.choice([1, 1, 1, 2, 3])):
            pairs = r.choice(self._mutations)(self, pairs, commands)
        return pairs

    def _drop(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        args = [i for i, (k, _) in enumerate(pairs) if not k.startswith(b"_")]
        if args:
            del pairs[self.rng.choice(args)]
        elif pairs:
            del pairs[self.rng.randrange(len(pairs))]
        return pairs

    def _extra(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        r = self.rng
        key = r.choice(
            [b"x", b"pool", b"seq", b"_x", b"k" * 255, b"\xff", b"timeout", b"_answered"]
        )
        pairs.insert(r.randrange(len(pairs) + 1), (key, r.choice(_TEXT_NASTY + _INT_NASTY[:4])))
        return pairs

    def _duplicate(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        if pairs:
            key, _ = self.rng.choice(pairs)
            pairs.append((key, self._nasty_for(key, pairs)))
        return pairs

    def _nasty_for(self, key: bytes, pairs: Pairs) -> bytes:
        command = dict(pairs).get(b"_command", b"")
        kinds = dict(_ARGUMENTS.get(command, []))
        if key == b"_command":
            return self.rng.choice(_COMMANDS_UNKNOWN + [c for c in _ARGUMENTS])
        return self.rng.choice(
            _value_pool(kinds.get(key, self.rng.choice(["int", "float", "text"])))
        )

    def _nasty_value(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        r = self.rng
        command = dict(pairs).get(b"_command", b"")
        arguments = _ARGUMENTS.get(command, [])
        if not arguments:
            return self._extra(pairs, commands)
        key, kind = r.choice(arguments)
        pairs = [p for p in pairs if p[0] != key]
        pairs.append((key, r.choice(_value_pool(kind))))
        return pairs

    def _huge_value(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        r = self.rng
        if r.random() < 0.95:  # keep 64 KB values rare: they cost bandwidth
            return self._nasty_value(pairs, commands)
        key = r.choice([k for k, _ in pairs] or [b"x"])
        pairs = [p for p in pairs if p[0] != key]
        pairs.append((key, bytes([r.randrange(32, 127)]) * 65535))
        return pairs

    def _command(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        r = self.rng
        name = r.choice(_COMMANDS_UNKNOWN[:-1] + list(_ARGUMENTS))
        if name == b"Y" * 4000 and r.random() < 0.9:
            name = b"Unknown%d" % r.randrange(1000)
        pairs = [p for p in pairs if p[0] != b"_command"]
        pairs.append((b"_command", name))
        return pairs

    def _fake_answer(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        r = self.rng
        key = r.choice([b"_answer", b"_error"])
        tag = r.choice([self.next_tag(), b"", b"1", b"\xff" * 8])
        out: Pairs = [(key, tag)]
        if key == b"_error":
            out.append((b"_error_code", r.choice([b"UNKNOWN", b"UNHANDLED", b"", b"X" * 300])))
            out.append((b"_error_description", r.choice([b"", b"boom", b"\xff\xfe"])))
        if r.random() < 0.3:
            out += pairs  # an answer that also holds a command
        return out

    def _no_ask(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        return [p for p in pairs if p[0] != b"_ask"]

    def _weird_ask(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        pairs = [p for p in pairs if p[0] != b"_ask"]
        pairs.append((b"_ask", self.rng.choice([b"", b"t" * 255, b"\x00", b"\xff\xfe", b"1"])))
        return pairs

    def _shuffle(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        self.rng.shuffle(pairs)
        return pairs

    def _empty_or_ask_only(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        return [] if self.rng.random() < 0.5 else [(b"_ask", self.next_tag())]

    def _wrong_listener(self, pairs: Pairs, commands: List[bytes]) -> Pairs:
        r = self.rng
        others = [c for c in _ARGUMENTS if c not in commands]
        if not others:
            return pairs
        pairs = [p for p in pairs if p[0] != b"_command"]
        pairs.append((b"_command", r.choice(others)))
        return pairs

    _mutations: List[Callable[[Generator, Pairs, List[bytes]], Pairs]] = [
        _drop,
        _extra,
        _duplicate,
        _nasty_value,
        _nasty_value,
        _nasty_value,
        _huge_value,
        _command,
        _fake_answer,
        _no_ask,
        _weird_ask,
        _shuffle,
        _empty_or_ask_only,
        _wrong_listener,
    ]

    # ---------------------------------------------------- framing damage

    def damaged(self, valid: bytes) -> bytes:
        """
        A box whose framing is broken: random bytes, bit flips, a wrong
        length, an oversize key, or a box cut short.
        """
        r = self.rng
        kind = r.randrange(5)
        if kind == 0:
            return r.randbytes(r.randrange(1, 100))
        if kind == 1:
            data = bytearray(valid)
            for _ in range(r.randrange(1, 5)):
                bit = r.randrange(len(data) * 8)
                data[bit // 8] ^= 1 << (bit % 8)
            return bytes(data)
        if kind == 2:
            data = bytearray(valid)
            # The first key's or value's length, or one further in.
            at = r.choice([0, 2 + data[1]] if len(data) > 4 else [0])
            new = max(
                0,
                min(65535, ((data[at] << 8) | data[at + 1]) + r.choice([-3, -1, 1, 7, 300, 65000])),
            )
            data[at : at + 2] = new.to_bytes(2, "big")
            return bytes(data)
        if kind == 3:
            length = r.choice([256, 257, 1000, 65535])
            key = b"k" * r.choice([0, 10, length])
            return length.to_bytes(2, "big") + key + (amp_pair(b"", b"") if key else b"")
        return valid[: r.randrange(1, max(2, len(valid) - 1))]


# ---------------------------------------------------------------- checks


def could_change_state(box: Box) -> bool:
    """
    Whether C{box} (as the server parses it) could change the worker list:
    a C{WorkerUpdate} or C{WorkerGone} whose arguments all parse with the
    schema's own types.  Conservative: a box holding C{_answer} or C{_error}
    counts too.
    """
    command = {b"WorkerUpdate": WorkerUpdate, b"WorkerGone": WorkerGone}.get(
        box.get(b"_command", b"")
    )
    if command is None:
        return False
    for name, argument in command.arguments:
        raw = box.get(name)
        if raw is None:
            if not argument.optional:
                return False
            continue
        try:
            argument.fromString(raw)
        except (ValueError, TypeError, OverflowError):
            return False
    return True


def _names_clean_pool(data: bytes) -> bool:
    return CLEAN_POOL.encode() in data


# ------------------------------------------------------------------ pool


@dataclass
class Chunk:
    """
    Boxes sent in one write: their bytes and where each ends.
    """

    data: bytes
    ends: List[int]


@dataclass
class Pool:
    """
    Chunks of boxes for one listener, used in rotation, and framing-damaged
    boxes, each sent last on its connection.
    """

    chunks: List[Chunk] = field(default_factory=list)
    damaged: List[bytes] = field(default_factory=list)

    @property
    def boxes(self) -> int:
        return sum(len(c.ends) for c in self.chunks)


def _chunk(boxes: List[bytes]) -> Chunk:
    ends: List[int] = []
    at = 0
    for b in boxes:
        at += len(b)
        ends.append(at)
    return Chunk(b"".join(boxes), ends)


def frontend_pool(seed: int, boxes: int, per_chunk: int = 64, damaged: int = 500) -> Pool:
    """
    Front-end boxes: 3 in 4 mutated, the rest valid (no free slot: nothing
    changes); one chunk in 8 has a framing-damaged box in its middle too.
    None names the clean client's pool.
    """
    gen = Generator(seed)
    commands = [b"NextWorker", b"Stats"]
    pool = Pool()
    while pool.boxes < boxes:
        out: List[bytes] = []
        while len(out) < per_chunk:
            pairs = gen.valid_frontend()
            if gen.rng.random() < 0.75:
                pairs = gen.mutate(pairs, commands)
            data = amp_box(pairs)
            if not _names_clean_pool(data):
                out.append(data)
        if gen.rng.random() < 1 / 8:
            bad = gen.damaged(amp_box(gen.valid_frontend()))
            if not _names_clean_pool(bad):
                out[per_chunk // 2] = bad
        pool.chunks.append(_chunk(out))
    while len(pool.damaged) < damaged:
        bad = gen.damaged(amp_box(gen.mutate(gen.valid_frontend(), commands)))
        if not _names_clean_pool(bad):
            pool.damaged.append(bad)
    return pool


def scheduler_pool(seed: int, boxes: int, per_chunk: int = 64, damaged: int = 500) -> Pool:
    """
    Scheduler boxes: well framed (each parses as exactly one box with keys
    of at most 255 bytes) and none that could change the worker list; the
    valid calls among them are C{ListWorkers} and C{Stats}.  Damaged boxes
    (sent last on a connection) come from mutated updates.
    """
    gen = Generator(seed)
    commands = [b"WorkerUpdate", b"WorkerGone", b"ListWorkers", b"Stats"]
    pool = Pool()
    while pool.boxes < boxes:
        out: List[bytes] = []
        while len(out) < per_chunk:
            pairs = gen.mutate(gen.valid_scheduler(), commands)
            data = amp_box(pairs)
            parsed = _parse_one(data)
            if parsed is None or could_change_state(parsed):
                continue
            out.append(data)
        pool.chunks.append(_chunk(out))
    while len(pool.damaged) < damaged:
        pairs = gen.mutate(gen.valid_scheduler(), [b"WorkerUpdate"])
        pool.damaged.append(gen.damaged(amp_box(pairs)))
    return pool


def _parse_one(data: bytes) -> Optional[Box]:
    if any(k > 255 for k in _key_lengths(data)):
        return None
    boxes = BoxParser().feed(data)
    return boxes[0] if len(boxes) == 1 else None


def _key_lengths(data: bytes) -> List[int]:
    lengths: List[int] = []
    at = 0
    while at + 2 <= len(data):
        key_length = (data[at] << 8) | data[at + 1]
        lengths.append(key_length)
        if key_length == 0:
            at += 2
            continue
        at += 2 + key_length
        if at + 2 > len(data):
            break
        at += 2 + ((data[at] << 8) | data[at + 1])
    return lengths
