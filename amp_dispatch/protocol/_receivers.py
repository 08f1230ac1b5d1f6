"""
Per-connection box receivers: one L{amp.BoxDispatcher} per role over the
store, the generic path every box takes that a fast path does not answer.

A receiver sees each command box before any parsing, so it answers arguments
that are missing, do not parse or are out of range with C{INVALID_ARGUMENT}
and keeps the connection (stock AMP would answer an unknown error and drop
it).  A command the role does not serve gets AMP's standard unhandled-command
error, which also keeps the connection.  The commands a role serves are the
schema's (C{FRONTEND_COMMANDS}, C{SCHEDULER_COMMANDS}); each is handled by
the receiver's method named after it (C{NextWorker}: C{next_worker}).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, ClassVar, Dict, Optional, Set, Tuple, Type, cast

from amp_dispatch_commands import (
    DEFAULT_PAGE,
    FRONTEND_COMMANDS,
    PROTOCOL_VERSION,
    SCHEDULER_COMMANDS,
    InvalidArgument,
    ListWorkers,
    NextWorker,
    NoWorkerAvailable,
    Overloaded,
    Stats,
    StoreUnavailable,
    WorkerGone,
    WorkerUpdate,
)
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp
from twisted.python.failure import Failure

from .._log import get_logger
from .._records import Worker
from ..store._interface import (
    IWorkerStore,
    StoreStats,
    UpdateOutcome,
    WorkerReport,
    WorkerRows,
    then,
)
from ._addresses import describe
from ._codecs import arguments_of, encode_page, list_encoder
from ._hooks import (
    ANSWERED,
    BAD_FRAMING,
    CANCELLED,
    INVALID,
    INVALID_ARGUMENT,
    KNOWN,
    NO_WORKER,
    NOT_A_COMMAND,
    NOT_SERVED,
    OVERLOADED,
    STORE_UNAVAILABLE,
    TIMED_OUT,
    UNKNOWN,
    CommandHook,
    ConnectionInfo,
)
from ._peerlog import MAX_SHOWN, Warnings, shown

_log = get_logger("amp_dispatch.protocol")

_Result = Dict[str, Any]
_Handler = Callable[..., Any]
#: AMP's responder of one command: the box in, the answer (or its Deferred) out.
_Responder = Callable[[amp.AmpBox], Any]

#: The hook outcome of each declared error a handler raises at once.
_ERROR_OUTCOMES: Dict[Type[Exception], str] = {
    InvalidArgument: INVALID,
    NoWorkerAvailable: NO_WORKER,
    Overloaded: OVERLOADED,
    StoreUnavailable: STORE_UNAVAILABLE,
}

_ROWS = list_encoder(ListWorkers, b"workers")

#: Each command's declared errors and their codes, by command name (set by
#: amp's Command metaclass: errors and fatalErrors together).
_DECLARED: Dict[bytes, Dict[Type[Exception], bytes]] = {
    command.commandName: cast(Any, command).allErrors
    for command in FRONTEND_COMMANDS + SCHEDULER_COMMANDS
}


def unhandled(name: bytes) -> amp.RemoteAmpError:
    """
    AMP's error for a command the listener does not serve, as
    L{amp.BoxDispatcher} makes it, but naming the command truncated (see
    L{shown}) so that the answer can always be sent.
    """
    if len(name) > MAX_SHOWN:
        description = f"Unhandled Command: {name[:MAX_SHOWN]!r}... ({len(name)} bytes)"
    else:
        description = f"Unhandled Command: {name!r}"
    return amp.RemoteAmpError(
        amp.UNHANDLED_ERROR_CODE, description, False, local=Failure(amp.UnhandledCommand())
    )


def handler_name(command: Type[amp.Command]) -> str:
    """
    The name of the receiver method that handles C{command}: its name in
    snake case (C{WorkerUpdate}: C{worker_update}).
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", command.__name__).lower()


class _RoleReceiver(amp.BoxDispatcher):
    """
    Answers one connection's commands for one role (its own locator).

    Subclasses name the role and its commands; each command is handled by
    the method of L{handler_name}, called with the parsed arguments in the
    schema's order, which reports the outcome to the hook when it succeeds
    (errors are reported here).

    A box that is not a command is a client error, logged (see
    L{_rejected}) and otherwise ignored: an answer or error box (we never
    call a peer), an empty box, a box of unknown keys.  A box asking for an
    answer without naming a command is answered C{UNHANDLED}.  None of them
    closes the connection.
    """

    role: ClassVar[str]
    commands: ClassVar[Tuple[Type[amp.Command], ...]]
    #: The level connections opening and closing are logged at.
    connection_level: ClassVar[int] = logging.INFO

    def __init__(
        self,
        store: IWorkerStore,
        clock: IReactorTime,
        connection: ConnectionInfo,
        hook: CommandHook,
    ) -> None:
        super().__init__(locator=self)
        self.store = store
        self.clock = clock
        self.connection = connection
        self._hook = hook
        self._responders: Dict[bytes, _Responder] = {
            command.commandName: self._responder(command, getattr(self, handler_name(command)))
            for command in self.commands
        }
        #: When a call of the connection last ended (see L{busy}).
        self.last_active = 0.0
        #: The connection's calls waiting for an answer (cancelled when it
        #: closes): calls that wait for a slot, and, with a store answering
        #: later, calls waiting for the store.
        self.waiting: Set[Deferred[Any]] = set()
        # What the peer makes us log, limited per connection.
        self._warnings = Warnings(clock, _log, {"role": self.role, "peer": connection.peer})

    @property
    def peer(self) -> str:
        """
        The peer's address, for logs.
        """
        return self.connection.peer

    def handled(self, command: bytes, outcome: str) -> None:
        """
        Tell the hook that one C{command} came to C{outcome}.
        """
        self._hook(command, outcome, self.connection, 1)

    def locateResponder(self, name: bytes) -> Optional[_Responder]:
        return self._responders.get(name)

    def dispatchCommand(self, box: amp.AmpBox) -> Deferred[Any]:
        name = box[amp.COMMAND]
        responder = self.locateResponder(name)
        if responder is None:
            self._rejected(name, NOT_SERVED, "command not served on this listener")
            return fail(unhandled(name))
        return maybeDeferred(responder, box)

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        if amp.COMMAND in box and amp.ANSWER not in box and amp.ERROR not in box:
            self._commandReceived(box)
            return
        if amp.ANSWER in box or amp.ERROR in box:
            self._rejected(
                None, NOT_A_COMMAND, "an answer or error, but this listener makes no calls"
            )
        elif amp.ASK in box:
            self._rejected(None, NOT_A_COMMAND, "a call without _command")
            error = amp.AmpBox()
            error[amp.ERROR] = box[amp.ASK]
            error[amp.ERROR_CODE] = amp.UNHANDLED_ERROR_CODE
            error[amp.ERROR_DESCRIPTION] = b"No _command"
            self._safeEmit(error)
        else:
            self._rejected(None, NOT_A_COMMAND, "not a command" if box else "an empty box")

    def startReceivingBoxes(self, boxSender: amp.IBoxSender) -> None:
        super().startReceivingBoxes(boxSender)
        transport = getattr(boxSender, "transport", None)
        if transport is not None:
            self.connection.peer = describe(transport.getPeer())
        self._warnings.context["peer"] = self.connection.peer
        _log.log(self.connection_level, "connection opened", role=self.role, peer=self.peer)

    def stopReceivingBoxes(self, reason: Failure) -> None:
        for waiting in list(self.waiting):
            waiting.cancel()
        super().stopReceivingBoxes(reason)
        self._warnings.stop()
        _log.log(self.connection_level, "connection closed", role=self.role, peer=self.peer)

    def busy(self) -> bool:
        """
        Whether the connection has calls waiting for an answer (it is not
        idle, even if its peer sends nothing).
        """
        return bool(self.waiting)

    def holds_workers(self) -> bool:
        """
        Whether workers belong to the connection (closing it would start
        their lease grace).
        """
        return False

    def unhandledError(self, failure: Failure) -> None:
        # A refused command that asked for no answer (no _ask) ends here; it
        # was logged when refused and there is nobody to tell: keep the
        # connection, as for a refused command that asked.
        error = failure.value
        if isinstance(error, amp.RemoteAmpError) and not error.fatal:
            return
        super().unhandledError(failure)

    def dropped(self, reason: str) -> None:
        """
        The connection is being closed because its bytes are not AMP boxes
        we accept (C{reason}): logged at warning (Twisted's generic protocol
        calls this; the listeners' own protocols warn per listener).
        """
        self.rejected(BAD_FRAMING)
        self._warnings.warn("connection dropped", reason=reason)

    def rejected(self, kind: str) -> None:
        """
        Tell the hook that an input of C{kind} was rejected (the caller logs
        it).
        """
        self._hook.rejected(self.role, kind)

    def _rejected(self, command: Optional[bytes], kind: str, reason: str) -> None:
        """
        Count a rejected input of C{kind} and log it at warning, within the
        connection's limit of lines per second; C{command} is the command
        name the peer sent, if any.
        """
        self.rejected(kind)
        self._warnings.warn(
            "input rejected", command=None if command is None else shown(command), reason=reason
        )

    def _responder(self, command: Type[amp.Command], handler: _Handler) -> _Responder:
        """
        Wrap C{handler} with parsing, response serialization and the mapping of
        C{command}'s declared errors to their codes.
        """
        name = command.commandName
        errors = _DECLARED[name]
        parse = arguments_of(command).parse

        def declared(failure: Failure) -> Failure:
            return self.store_failed(name, failure)

        def respond(box: amp.AmpBox) -> Any:
            try:
                result = handler(*parse(box))
            except InvalidArgument as e:
                self._rejected(name, INVALID_ARGUMENT, str(e))
                self.handled(name, INVALID)
                raise amp.RemoteAmpError(errors[InvalidArgument], str(e)) from None
            except tuple(errors) as e:
                if isinstance(e, Overloaded):
                    self._warnings.warn("waiting call refused", reason=str(e))
                self.handled(name, _ERROR_OUTCOMES[type(e)])
                raise amp.RemoteAmpError(errors[type(e)], str(e)) from None
            if isinstance(result, Deferred):
                return result.addCallback(respond_with).addErrback(declared)
            return respond_with(result)

        def respond_with(result: Any) -> amp.AmpBox:
            return _response(result, command, self.boxSender)

        return respond

    def store_failed(self, command: bytes, failure: Failure) -> Failure:
        """
        The failure of a call of C{command} that came later (from the store,
        or a call that waited): a declared error answered with its code
        (C{StoreUnavailable} told to the hook); any other logged at error
        (within the connection's limit of lines per second) and answered as
        AMP answers an undeclared error.
        """
        if failure.check(CancelledError):
            return failure  # the connection closed: nobody reads an answer
        if failure.check(StoreUnavailable):
            # Declared by every command; the store logs its own state changes.
            self.handled(command, STORE_UNAVAILABLE)
        errors = _DECLARED[command]
        matched = failure.check(*errors)
        if matched is not None:
            code = errors[cast(Type[Exception], matched)]
            return Failure(amp.RemoteAmpError(code, str(failure.value), local=failure))
        self._warnings.error(
            "store call failed", command=command.decode("ascii"), error=failure.getErrorMessage()
        )
        return Failure(amp.RemoteAmpError(amp.UNKNOWN_ERROR_CODE, "Unknown Error"))

    def stats(self) -> Any:
        return then(self.store.stats(), self._stats)

    def _stats(self, stats: StoreStats) -> _Result:
        self.handled(Stats.commandName, ANSWERED)
        return stats_answer(stats)


def stats_answer(stats: StoreStats) -> _Result:
    """
    The values of a C{Stats} answer.
    """
    return {
        "workers": stats.workers,
        "free_slots": stats.free_slots,
        "waiting": stats.waiting,
        "dispatched": stats.dispatched,
        "protocol": PROTOCOL_VERSION,
    }


def _response(
    result: Any, command: Type[amp.Command], sender: Optional[amp.IBoxSender]
) -> amp.AmpBox:
    """
    The answer box of a handler's C{result}: as it is if the handler encoded
    it itself, else made by C{command}'s response arguments.
    """
    if isinstance(result, amp.AmpBox):
        return result
    box: amp.AmpBox = command.makeResponse(result, sender)
    return box


class FrontendReceiver(_RoleReceiver):
    """
    The front-end listener's receiver: C{NextWorker} and C{Stats} only.
    """

    role = "frontend"
    commands = FRONTEND_COMMANDS
    # Front ends are many and come and go: their connections are not news.
    connection_level = logging.DEBUG

    def next_worker(self, pool: Optional[str], timeout: Optional[float]) -> Any:
        answer = self.store.next_worker(pool, timeout, owner=self.connection.number)
        if not isinstance(answer, Deferred):
            self.handled(NextWorker.commandName, ANSWERED)
            return _assignment(answer)
        waiting = answer
        self.waiting.add(waiting)
        # A call waits if it has a timeout and its answer has not come yet.
        started = self.clock.seconds() if timeout and not waiting.called else None

        def done(result: Any) -> Any:
            self.waiting.discard(waiting)
            self.last_active = now = self.clock.seconds()
            if started is not None and not (
                isinstance(result, Failure) and result.check(CancelledError)
            ):
                self._hook.waited(now - started)
            if not isinstance(result, Failure):
                self.handled(NextWorker.commandName, ANSWERED)
                return result
            if result.check(CancelledError):
                # The connection closed while waiting; nobody reads the answer.
                self.handled(NextWorker.commandName, CANCELLED)
                return Failure(NoWorkerAvailable("connection closed while waiting"))
            if result.check(NoWorkerAvailable):
                self.handled(NextWorker.commandName, TIMED_OUT if timeout else NO_WORKER)
            elif result.check(Overloaded):
                self._warnings.warn("waiting call refused", reason=str(result.value))
                self.handled(NextWorker.commandName, OVERLOADED)
            return result

        return waiting.addBoth(done).addCallback(_assignment)


def _assignment(answer: Worker) -> _Result:
    return {"worker_id": answer.worker_id, "host": answer.host, "port": answer.port}


class SchedulerReceiver(_RoleReceiver):
    """
    The scheduler listener's receiver: the commands that change the worker
    list, C{ListWorkers} and C{Stats}.  The connection owns the workers it
    updates (see L{IWorkerStore.owner_lost}).
    """

    role = "scheduler"
    commands = SCHEDULER_COMMANDS

    def worker_update(self, *arguments: Any) -> Any:
        updated = self.store.update(WorkerReport(*arguments), self.connection.number)
        return then(updated, self._updated)

    def _updated(self, outcome: UpdateOutcome) -> _Result:
        self.handled(WorkerUpdate.commandName, outcome.name)
        return {"accepted": outcome.accepted}

    def holds_workers(self) -> bool:
        return self.store.holds(self.connection.number)

    def worker_gone(self, worker_id: str) -> Any:
        return then(self.store.gone(worker_id), self._gone)

    def _gone(self, known: bool) -> _Result:
        self.handled(WorkerGone.commandName, KNOWN if known else UNKNOWN)
        return {"known": known}

    def list_workers(self, pool: Optional[str], after: Optional[str], limit: Optional[int]) -> Any:
        return then(self.store.list_workers(pool, after, limit or DEFAULT_PAGE), self._page)

    def _page(self, rows: WorkerRows) -> amp.AmpBox:
        self.handled(ListWorkers.commandName, ANSWERED)
        # Rows encoded by the schema's row arguments: the bytes of AmpList's
        # encoding, about 5x faster.
        encoded, next_after = encode_page(_ROWS, rows.workers, rows.more)
        answer = amp.AmpBox(workers=encoded)
        if next_after is not None:
            answer[b"next_after"] = next_after.encode("utf-8")
        return answer

    def stopReceivingBoxes(self, reason: Failure) -> None:
        super().stopReceivingBoxes(reason)
        self.store.owner_lost(self.connection.number)


__all__ = ["FrontendReceiver", "SchedulerReceiver", "handler_name", "stats_answer", "unhandled"]
