"""
The listeners' protocols by role: L{FrontendProtocol} and
L{SchedulerProtocol}, a L{ListenerProtocol} each, with the fast paths of
their hot commands in front of the role's receiver; and L{EncodedWorker},
the answer records the memory store makes for the front-end fast path (each
carries its C{NextWorker} answer, encoded once).

Fast paths: a C{NextWorker} that finds a free slot (or answers
C{NO_WORKER_AVAILABLE} at once), a C{WorkerUpdate} whose arguments are valid,
and C{Stats}.  Arguments are parsed and answers encoded by the schema
(L{_codecs}); every call that must wait and every bad argument goes to the
receiver, which answers it as the generic protocol does.  A store answering
later (a L{Deferred}) is answered later: the answer is written when it comes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional

from amp_dispatch_commands import (
    DEFAULT_POOL,
    NO_WORKER_AVAILABLE,
    InvalidArgument,
    NextWorker,
    Stats,
    WorkerUpdate,
)
from attrs import field, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.protocols import amp
from twisted.python.failure import Failure

from .._log import get_logger
from .._records import Worker
from ..store._interface import IWorkerStore, StoreStats, UpdateOutcome, WorkerReport
from ..store._memory import no_free_slot
from ._codecs import ANSWER_KEY, CommandArguments, answer, error, response_encoder
from ._framing import END, pack_length
from ._hooks import ANSWERED, CANCELLED, NO_WORKER, CommandHook, ConnectionInfo
from ._listening import Box, ListenerProtocol
from ._receivers import FrontendReceiver, SchedulerReceiver, _RoleReceiver, stats_answer

if TYPE_CHECKING:
    from ..server._listener import ListenerFactory

_log = get_logger("amp_dispatch.protocol")

_NEXT_WORKER = NextWorker.commandName
_UPDATE = WorkerUpdate.commandName
_STATS = Stats.commandName

_NEXT_WORKER_ARGUMENTS = CommandArguments(NextWorker, remembered=[b"pool"])
_UPDATE_ARGUMENTS = CommandArguments(WorkerUpdate, remembered=[b"pool"], record=WorkerReport)
_WORKER = response_encoder(NextWorker)
_STATS_ANSWER = response_encoder(Stats)
_ACCEPTED = response_encoder(WorkerUpdate).of_mapping({"accepted": True})
_NOT_ACCEPTED = response_encoder(WorkerUpdate).of_mapping({"accepted": False})


# The NextWorker boxes without arguments that Twisted clients send (keys
# sorted: _ask, then _command) or that put _command first.
_ASK_KEY = b"\x00\x04_ask"
_COMMAND_END = b"\x00\x08_command\x00\x0aNextWorker" + END
_COMMAND_ASK_KEY = b"\x00\x08_command\x00\x0aNextWorker\x00\x04_ask"
# Where the tag starts, after the key and the tag's length.
_ASK_TAG_AT = len(_ASK_KEY) + 2
_COMMAND_ASK_TAG_AT = len(_COMMAND_ASK_KEY) + 2


class _RoleProtocol(ListenerProtocol):
    """
    A listener's protocol over a store: both roles answer C{Stats} on the
    fast path.

    A store's answer that comes as a L{Deferred} already fired is answered
    in line with the others of its read; one that comes later is written
    when it comes (or not at all if the connection closed meanwhile).  A
    C{NextWorker} waiting for the store waits with the receiver's calls:
    the connection is busy, and closing it cancels the wait.
    """

    def __init__(
        self,
        receiver: _RoleReceiver,
        factory: ListenerFactory,
        store: IWorkerStore,
        hook: CommandHook,
    ) -> None:
        super().__init__(receiver, factory)
        self._store = store
        self._hook = hook
        self._fast[_STATS] = self._stats

    def _stats(self, box: Box) -> Optional[bytes]:
        return self._answer(box, self._store.stats(), self._stats_answer)

    def _stats_answer(self, box: Box, stats: StoreStats) -> bytes:
        self._hook(_STATS, ANSWERED, self._connection, 1)
        return answer(box[amp.ASK], _STATS_ANSWER.of_mapping(stats_answer(stats)))

    def _answer(
        self,
        box: Box,
        result: Any,
        encode: Callable[[Box, Any], Optional[bytes]],
        *,
        wait: bool = False,
    ) -> Optional[bytes]:
        """
        The answer to C{box}, from the store's C{result} by C{encode} (which
        returns C{None} to hand the box to the receiver): now if the store
        answered now, else C{b""} now and the answer when it comes.

        @param wait: whether the call waits with the receiver's calls while
            the store's answer has not come.
        """
        if not isinstance(result, Deferred):
            return encode(box, result)
        now: List[Any] = []

        def seen(value: Any) -> Any:
            now.append(value)
            return value

        result.addBoth(seen)
        if now:
            result.addErrback(lambda _: None)  # handled here, now
            return self._encode_result(box, now[0], encode)
        if wait:
            self._receiver.waiting.add(result)
        result.addBoth(self._came, box, encode, result)
        return b""

    def _encode_result(
        self, box: Box, value: Any, encode: Callable[[Box, Any], Optional[bytes]]
    ) -> Optional[bytes]:
        if isinstance(value, Failure):
            reason = self._receiver.store_failed(box.get(amp.COMMAND, b""), value).value
            if not isinstance(reason, amp.RemoteAmpError):
                return b""  # cancelled: nobody reads an answer
            return error(box[amp.ASK], reason.errorCode, reason.description)
        return encode(box, value)

    def _came(
        self,
        value: Any,
        box: Box,
        encode: Callable[[Box, Any], Optional[bytes]],
        result: Deferred[Any],
    ) -> None:
        """
        The store's answer came later: write the answer, or hand the box to
        the receiver; if the connection closed meanwhile, only say so.
        """
        receiver = self._receiver
        if result in receiver.waiting:
            receiver.waiting.discard(result)
            receiver.last_active = self._clock.seconds()
        if isinstance(value, Failure) and value.check(CancelledError):
            # The connection closed while the call waited for the store.
            self._hook(box[amp.COMMAND], CANCELLED, self._connection, 1)
            return
        encoded = self._encode_result(box, value, encode)
        if self.transport is None:
            return  # closed meanwhile: nobody reads the answer
        if encoded is None:
            receiver.ampBoxReceived(amp.AmpBox(box))
        elif encoded:
            self._flush([encoded])


@frozen(eq=False)
class EncodedWorker(Worker):
    """
    A L{Worker} with its C{NextWorker} answer encoded (after the tag), once,
    when it is made: the records the memory store answers with (see
    L{MemoryStore}'s C{record}), which the front-end fast path answers
    without encoding them again.

    @ivar answer: the answer's pairs and the end of the box.
    """

    answer: bytes = field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "answer", _WORKER.of(self))


class FrontendProtocol(_RoleProtocol):
    """
    One front-end connection: C{NextWorker} on the fast path when it finds a
    free slot or answers C{NO_WORKER_AVAILABLE} at once, and C{Stats};
    everything else through a L{FrontendReceiver}.

    A store's L{EncodedWorker} is answered with its own encoding; another
    L{Worker} is encoded each time.
    """

    def __init__(self, store: IWorkerStore, factory: ListenerFactory, hook: CommandHook) -> None:
        receiver = FrontendReceiver(store, factory.clock, ConnectionInfo("frontend"), hook)
        super().__init__(receiver, factory, store, hook)
        self._take = store.take
        self._box_limit = factory.settings.max_box_bytes
        # NextWorker answers of the current read, told to the hook at once.
        self._answered = 0
        self._fast[_NEXT_WORKER] = self._next_worker_box

    has_shortcut = True

    def _shortcut(self, buffer: bytes, start: int, end: int, out: List[bytes]) -> int:
        if buffer.startswith(_ASK_KEY, start):
            tag_start = start + _ASK_TAG_AT
            rest = _COMMAND_END
        elif buffer.startswith(_COMMAND_ASK_KEY, start):
            tag_start = start + _COMMAND_ASK_TAG_AT
            rest = END
        else:
            return -1
        if tag_start > end:
            return -1
        tag_end = tag_start + ((buffer[tag_start - 2] << 8) | buffer[tag_start - 1])
        if tag_end + len(rest) - start > self._box_limit or not buffer.startswith(rest, tag_end):
            return -1  # too long (the reader refuses it), or not this shape
        tag = buffer[tag_start:tag_end]
        worker = self._take(DEFAULT_POOL)
        if worker.__class__ is EncodedWorker:
            self._answered += 1
            out.append(ANSWER_KEY + pack_length(len(tag)) + tag + worker.answer)
            return tag_end + len(rest)
        # Without a timeout the call never waits: there is always an answer.
        out.append(self._answer_taken(tag, DEFAULT_POOL, 0.0, None, worker) or b"")
        return tag_end + len(rest)

    def _next_worker_box(self, box: Box) -> Optional[bytes]:
        try:
            pool, timeout = _NEXT_WORKER_ARGUMENTS.parse(box)
        except InvalidArgument:
            return None  # INVALID_ARGUMENT, from the receiver
        return self._next_worker(box[amp.ASK], pool or DEFAULT_POOL, timeout or 0.0, box)

    def _next_worker(
        self, tag: bytes, pool: str, timeout: float, box: Optional[Box]
    ) -> Optional[bytes]:
        """
        The answer to a C{NextWorker} (C{box}, or an argument-less one): a
        worker, C{NO_WORKER_AVAILABLE}, C{None} when the call must wait (the
        receiver waits), or C{b""} when the store answers later.
        """
        worker = self._take(pool)
        if worker.__class__ is EncodedWorker:
            self._answered += 1
            return ANSWER_KEY + pack_length(len(tag)) + tag + worker.answer
        return self._answer_taken(tag, pool, timeout, box, worker)

    def _answer_taken(
        self, tag: bytes, pool: str, timeout: float, box: Optional[Box], worker: Any
    ) -> Optional[bytes]:
        """
        L{_next_worker} for what the store's C{take} gave but an
        L{EncodedWorker}: none, another L{Worker}, or a L{Deferred}.
        """
        if isinstance(worker, Deferred):
            later = {amp.ASK: tag, amp.COMMAND: _NEXT_WORKER} if box is None else box
            return self._answer(
                later,
                worker,
                lambda box, worker: self._taken(pool, timeout, box[amp.ASK], worker),
                wait=True,
            )
        return self._taken(pool, timeout, tag, worker)

    def _taken(
        self, pool: str, timeout: float, tag: bytes, worker: Optional[Worker]
    ) -> Optional[bytes]:
        """
        The answer once the store took C{worker}, or none (see
        L{_next_worker}).
        """
        if worker is None:
            if timeout:
                return None
            self._hook(_NEXT_WORKER, NO_WORKER, self._connection, 1)
            return error(tag, NO_WORKER_AVAILABLE, str(no_free_slot(pool)))
        self._answered += 1
        body = worker.answer if isinstance(worker, EncodedWorker) else _WORKER.of(worker)
        return answer(tag, body)

    def _flush(self, out: List[bytes]) -> None:
        if self._answered:
            self._hook(_NEXT_WORKER, ANSWERED, self._connection, self._answered)
            self._answered = 0
        super()._flush(out)


class SchedulerProtocol(_RoleProtocol):
    """
    One scheduler connection: valid C{WorkerUpdate}s and C{Stats} on the fast
    path, everything else (and any update whose arguments need an error)
    through a L{SchedulerReceiver}, which owns the connection's workers.
    """

    def __init__(self, store: IWorkerStore, factory: ListenerFactory, hook: CommandHook) -> None:
        receiver = SchedulerReceiver(store, factory.clock, ConnectionInfo("scheduler"), hook)
        super().__init__(receiver, factory, store, hook)
        self._update = store.update
        self._parse = _UPDATE_ARGUMENTS.parse
        self._owner = receiver.connection.number
        self._fast[_UPDATE] = self._worker_update

    def _worker_update(self, box: Box) -> Optional[bytes]:
        try:
            report = self._parse(box)
        except InvalidArgument:
            return None  # INVALID_ARGUMENT, from the receiver
        outcome = self._update(report, self._owner)
        if outcome.__class__ is not UpdateOutcome:
            return self._answer(box, outcome, self._updated)
        return self._updated(box, outcome)

    def _updated(self, box: Box, outcome: UpdateOutcome) -> bytes:
        self._hook(_UPDATE, outcome.name, self._connection, 1)
        tag = box[amp.ASK]
        return (
            ANSWER_KEY
            + pack_length(len(tag))
            + tag
            + (_ACCEPTED if outcome.accepted else _NOT_ACCEPTED)
        )


__all__ = ["EncodedWorker", "FrontendProtocol", "SchedulerProtocol"]
