"""
The shared store (L{IWorkerStore}) on Redis or Valkey: any number of
dispatchers (replicas) share one queue, and a worker of capacity c is
answered at most c times between two of its accepted updates, counting
every replica, because every change is one atomic script of the store (see
L{_redis_scripts} for the layout).

What stays in a replica: its waiting calls (the store keeps their tokens in
line; an update that frees a slot hands it to the first token, keeps the
answer for the token's replica and wakes it through pub/sub; the replica
collects the answer, or, at the call's timeout, withdraws the token or
collects the answer that came just in time), the timers of those calls, and
its heartbeat: every L{heartbeat_interval} seconds it renews its place in
the store and reaps, with a bounded script, the workers whose ttl or lease
ran out on the store's clock and the replicas whose heartbeat lapsed (their
scheduler connections' workers get the lease grace, their calls leave the
line, the slots handed to them go back).  A replica found buried (its
heartbeat lapsed, say in a long pause) is fenced: it joins again under a
new incarnation, and its waiting calls fail.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence

from amp_dispatch_commands import DEFAULT_POOL, NoWorkerAvailable, Overloaded, StoreUnavailable
from attrs import define
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from .._log import get_logger
from .._records import RegisteredWorker, Worker
from ._interface import (
    IWorkerStore,
    Owner,
    PoolFigures,
    StoreStats,
    UpdateOutcome,
    WorkerReport,
    WorkerRows,
)
from ._memory import no_free_slot
from ._redis_scripts import Script, scripts
from ._resp import ReplyError, Value, encode_command

_log = get_logger("amp_dispatch.store")

_OUTCOMES = {
    b"accepted": UpdateOutcome.ACCEPTED,
    b"stale": UpdateOutcome.STALE,
    b"duplicate": UpdateOutcome.DUPLICATE,
}

#: The most answer records a replica keeps (made again when dropped).
_MAX_RECORDS = 1 << 18


class Link(Protocol):
    """
    What the store needs of its link to the server (L{_link.StoreLink}, or a
    test's): C{send} sends one command, encoded already, and returns a
    Deferred of its reply, failing with C{StoreUnavailable} when the store
    cannot be reached; C{send_then} gives the reply (or that error) to a
    function instead; C{send_connected} is C{send} while the link is being
    set up (in L{RedisStore.connected}).  A structural type: links need not
    inherit it.
    """

    def send(self, command: bytes) -> Deferred[Any]: ...

    def send_then(self, command: bytes, sink: Callable[[Any], object]) -> None: ...

    def send_connected(self, command: bytes) -> Deferred[Any]: ...

    @property
    def ready(self) -> bool:
        """
        Whether commands go to the store now.
        """

    def start(self) -> None: ...

    def stop(self) -> Deferred[None]: ...


_PENDING, _WAITING, _COLLECTING, _WITHDRAWING = "pending", "waiting", "collecting", "withdrawing"


@define(eq=False)
class _Waiter:
    deferred: Deferred[Worker]
    pool: str
    token: str
    owner: Optional[Owner]
    state: str = _WAITING
    timer: Optional[IDelayedCall] = None
    timed_out: bool = False
    # A wake-up came before the store said the call was in line.
    woken: bool = False
    # The caller gave up (its connection closed): a slot it gets goes back.
    cancelled: bool = False


@implementer(IWorkerStore)
class RedisStore:
    """
    The queue in a Redis or Valkey server shared by replicas
    (L{IWorkerStore}; every answer a L{Deferred}).

    Give it its link with L{attach}, then call L{connected} each time the
    link reaches the store (before the link calls itself ready) and
    L{woken} with each message on L{channel}.

    @param clock: the replica's time (waiting calls' timeouts, heartbeats).
    @param lease_grace: seconds a worker outlives its scheduler connection.
    @param max_waiting: the most calls waiting on this replica.
    @param max_waiting_per_owner: the most of them one front-end connection
        may make.
    @param record: makes the L{Worker} a worker is answered as.
    @param heartbeat_interval: seconds between heartbeats (and reaps).
    @param replica_timeout: seconds without a heartbeat after which other
        replicas bury this one.
    @param name: the replica's name in the store (random by default).
    @param time_key: for tests: read the store's time, in milliseconds, from
        this key instead of C{TIME}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        lease_grace: float,
        max_waiting: int,
        max_waiting_per_owner: int,
        record: Callable[[str, str, int], Worker] = Worker,
        heartbeat_interval: float = 1.0,
        replica_timeout: float = 5.0,
        name: Optional[str] = None,
        time_key: Optional[str] = None,
    ) -> None:
        self._clock = clock
        self._record = record
        self.lease_grace = lease_grace
        self.max_waiting = max_waiting
        self.max_waiting_per_owner = max_waiting_per_owner
        self.heartbeat_interval = heartbeat_interval
        self.replica_timeout = replica_timeout
        self.name = name or os.urandom(6).hex()
        self._incarnation = 0
        self.replica = f"{self.name}.0"
        self._scripts = scripts(time_key)
        self._next = self._scripts["next"]
        # The calls of take, by pool (see _take_command).
        self._take_commands: Dict[str, bytes] = {}
        self._loading: Dict[str, List[Deferred[None]]] = {}
        self._link: Optional[Link] = None
        self._waiters: Dict[str, _Waiter] = {}
        self._waiting_by: Dict[Owner, int] = {}
        self._tokens = 0
        self._owners: Dict[Owner, None] = {}
        self._records: Dict[bytes, Worker] = {}
        self._joined = False
        self._beat_at: Optional[float] = None
        self._heartbeat: Optional[LoopingCall] = None
        self._stopped = False
        # Calls whose place or answer in the store is unknown (a script
        # about them failed: the link went down): their tokens, withdrawn
        # (an answer handed to them given back) once the link is back.
        self._unsettled: Dict[str, str] = {}
        # Owners whose connection closed while the store could not be
        # told: their lease grace starts once the link is back.
        self._unlost: Dict[str, None] = {}
        # Answers collected for cancelled calls the store could not take
        # back yet.
        self._returning: List[bytes] = []
        #: Workers this replica's scripts removed, by reason.
        self.removed: Dict[str, int] = {}

    @property
    def channel(self) -> bytes:
        """
        The pub/sub channel this replica's waiting calls are woken on.
        """
        return b"amp:wake:" + self.name.encode("ascii")

    # -- the link ---------------------------------------------------------

    def attach(self, link: Link) -> None:
        """
        Run over C{link} from now on.
        """
        self._link = link

    def start(self) -> None:
        """
        Start the link and the heartbeat (and reaping) timer.
        """
        assert self._link is not None, "attach a link first"
        self._link.start()
        heartbeat = self._heartbeat = LoopingCall(self.beat)
        heartbeat.clock = self._clock
        heartbeat.start(self.heartbeat_interval, now=False).addErrback(
            lambda failure: _log.error("heartbeat stopped", error=failure.getErrorMessage())
        )

    def heartbeat_call(self) -> Optional[IDelayedCall]:
        """
        The heartbeat's pending timer, if any (for tests that count timers).
        """
        heartbeat = self._heartbeat
        return None if heartbeat is None else heartbeat.call

    def connected(self, identity: str) -> Deferred[None]:
        """
        The link reached the store, whose primary is C{identity} (its run
        and replication ids): join (or renew this replica's place), apply
        the hold rule if the primary changed, and collect answers that came
        while the link was down.
        """
        return Deferred.fromCoroutine(self._connected(identity))

    async def _connected(self, identity: str) -> None:
        if self._joined:
            reply = await self._run_connected(
                "reap",
                self.replica,
                self._ms(self.replica_timeout),
                self._ms(self.lease_grace),
                0,
            )
            if reply[0] == b"fenced":
                self._fence()
            else:
                self._beat_at = self._clock.seconds()
                self._removed(reply[2:])
        if not self._joined:
            await self._join(self._run_connected)
        if await self._run_connected("primary", identity):
            _log.warning("workers held", reason="the store's primary changed", primary=identity)
        await self._settle()
        for waiter in list(self._waiters.values()):
            if waiter.state == _WAITING:
                self._collect(waiter)

    async def _settle(self) -> None:
        """
        While the link was down: withdraw the tokens of calls that ended
        not knowing where they stood (giving back an answer handed to one),
        and start the lease grace of owners whose connection closed.
        """
        for token, pool in list(self._unsettled.items()):
            answer = await self._run_connected("withdraw", pool, token, self.replica)
            if answer and answer != b"withdrawn":
                await self._give_back(self._run_connected, answer)
            self._unsettled.pop(token, None)
        while self._returning:
            await self._give_back(self._run_connected, self._returning[0])
            del self._returning[0]
        for owner in list(self._unlost):
            await self._lose(owner, self._run_connected)
            self._unlost.pop(owner, None)

    async def _give_back(self, run: Callable[..., Deferred[Any]], answer: bytes) -> None:
        pool, stamp, taken = answer.split(b"\t", 2)
        worker_id = taken.split(b"\t", 2)[1]
        reply = await run("give_back", pool, worker_id, stamp)
        self._removed(reply[1:])

    async def _join(self, run: Callable[..., Deferred[Any]]) -> None:
        await run("join", self.replica, self._ms(self.replica_timeout))
        self._joined = True
        self._beat_at = self._clock.seconds()
        _log.info("replica joined", replica=self.replica)

    def woken(self, token: bytes) -> None:
        """
        A message on L{channel}: an answer waits for the call C{token}.
        """
        waiter = self._waiters.get(token.decode("ascii", "replace"))
        if waiter is None:
            return
        if waiter.state == _WAITING:
            self._collect(waiter)
        elif waiter.state == _PENDING:
            waiter.woken = True

    def _run(self, name: str, *arguments: Value) -> Deferred[Any]:
        """
        Run a script by its SHA; when the store does not hold it (after a
        restart or a C{SCRIPT FLUSH}: C{NOSCRIPT}, which runs nothing), load
        it once, whatever the number of calls that met it, and run it again.
        """
        link = self._link
        if link is None:
            return fail(StoreUnavailable("the store is not connected"))
        return self._script(link.send, name, arguments)

    def _run_connected(self, name: str, *arguments: Value) -> Deferred[Any]:
        """
        L{_run} while the link is being set up (see L{connected}).
        """
        assert self._link is not None
        return self._script(self._link.send_connected, name, arguments)

    def _script(
        self, send: Callable[[bytes], Deferred[Any]], name: str, arguments: Sequence[Value]
    ) -> Deferred[Any]:
        script = self._scripts[name]
        command = encode_command("EVALSHA", script.sha, 0, *arguments)
        return send(command).addErrback(self._unloaded, send, script, command)

    def _unloaded(
        self,
        failure: Failure,
        send: Callable[[bytes], Deferred[Any]],
        script: Script,
        command: bytes,
    ) -> Deferred[Any]:
        if not (failure.check(ReplyError) and str(failure.value).startswith("NOSCRIPT")):
            return failure  # type: ignore[return-value]
        return self._loaded(
            lambda: send(encode_command("SCRIPT", "LOAD", script.source)), script
        ).addCallback(lambda _: send(command))

    def _loaded(self, load: Callable[[], Deferred[Any]], script: Script) -> Deferred[None]:
        """
        Fires once C{script} is loaded (by C{load}: one C{SCRIPT LOAD} for
        every caller waiting at the time).
        """
        loaded: Deferred[None] = Deferred()
        waiting = self._loading.get(script.sha)
        if waiting is not None:
            waiting.append(loaded)
            return loaded
        self._loading[script.sha] = [loaded]

        def done(result: object) -> None:
            for each in self._loading.pop(script.sha):
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(None)

        load().addBoth(done)
        return loaded

    def _ms(self, seconds: float) -> int:
        return max(0, round(seconds * 1000))

    def _removed(self, flat: Sequence[bytes]) -> None:
        """
        Count and log the workers a script removed (id, pool, reason, flat).
        """
        removed = self.removed
        for at in range(0, len(flat) - 2, 3):
            reason = flat[at + 2].decode()
            removed[reason] = removed.get(reason, 0) + 1
            _log.info(
                "worker removed",
                worker_id=flat[at].decode(),
                pool=flat[at + 1].decode(),
                reason=reason,
            )

    def _answer(self, answer: bytes) -> Worker:
        """
        The record a worker is answered as, from the store's answer (its
        deadline, id, port and host, tab separated), kept while the answer
        stays the same.
        """
        record = self._records.get(answer)
        if record is None:
            _, worker_id, port, host = answer.split(b"\t", 3)
            record = self._record(worker_id.decode(), host.decode(), int(port))
            if len(self._records) >= _MAX_RECORDS:
                self._records.clear()
            self._records[answer] = record
        return record

    # -- the scheduler's side ---------------------------------------------

    def update(
        self, report: WorkerReport, owner: Optional[Owner] = None
    ) -> Deferred[UpdateOutcome]:
        """
        Apply a C{WorkerUpdate} sent by C{owner} (see L{IWorkerStore.update}).
        """
        if owner is not None and self._fenced():
            return fail(StoreUnavailable("this dispatcher lost its place in the store"))
        worker_id, host, port, capacity, pool, seq, ttl = report
        pool_name = pool or DEFAULT_POOL
        return self._run(
            "update",
            worker_id,
            host,
            port,
            capacity,
            pool_name,
            "" if seq is None else seq,
            max(1, self._ms(ttl)) if ttl else "",
            "" if owner is None else f"{self.replica}:{owner}",
            self.replica,
        ).addCallback(self._updated, report, pool_name, owner)

    def _updated(
        self, reply: List[Any], report: WorkerReport, pool: str, owner: Optional[Owner]
    ) -> Any:
        outcome = _OUTCOMES.get(reply[0])
        if outcome is None:
            if reply[0] == b"fenced":
                self._rejoin()
                raise StoreUnavailable("this dispatcher lost its place in the store")
            outcome = UpdateOutcome.ACCEPTED
            if reply[0] == b"registered":
                _log.info(
                    "worker registered",
                    worker_id=report.worker_id,
                    host=report.host,
                    port=report.port,
                    pool=pool,
                    capacity=report.capacity,
                )
            else:
                _log.info(
                    "worker moved",
                    worker_id=report.worker_id,
                    from_pool=reply[0][len(b"moved:") :].decode(),
                    pool=pool,
                )
        elif outcome is UpdateOutcome.ACCEPTED:
            _log.debug("worker updated", worker_id=report.worker_id, capacity=report.capacity)
        elif outcome is UpdateOutcome.STALE:
            _log.debug("update stale", worker_id=report.worker_id, seq=report.seq)
        else:
            _log.debug("update duplicate", worker_id=report.worker_id, seq=report.seq)
        self._removed(reply[2:])
        if owner is not None and outcome is not UpdateOutcome.STALE:
            self._owners[owner] = None
        if reply[1]:
            return self._serve(pool).addCallback(lambda _: outcome)
        return outcome

    def _serve(self, pool: str) -> Deferred[None]:
        """
        Serve waiting calls of C{pool} until none waits or no slot is free.
        """

        def served(reply: List[Any]) -> Optional[Deferred[None]]:
            self._removed(reply[1:])
            return self._serve(pool) if reply[0] else None

        return self._run("serve", pool).addCallback(served)

    def gone(self, worker_id: str) -> Deferred[bool]:
        """
        Remove a worker at once; whether it was registered.
        """
        return self._run("gone", worker_id).addCallback(self._was_gone, worker_id)

    def _was_gone(self, pool: bytes, worker_id: str) -> bool:
        if pool:
            self._removed([worker_id.encode(), pool, b"gone"])
        return bool(pool)

    def owner_lost(self, owner: Owner) -> Deferred[None]:
        """
        C{owner}'s connection closed: its workers go after the lease grace,
        unless an update for them comes first (from any replica).
        """
        if owner not in self._owners:
            return succeed(None)
        del self._owners[owner]
        held_by = f"{self.replica}:{owner}"
        return self._lose(held_by).addErrback(self._lose_failed, held_by)

    def _lose_failed(self, failure: Failure, owner: str) -> None:
        """
        The store could not be told that C{owner}'s connection closed: tell
        it once the link is back (else its workers would stay held by a
        connection that is gone, never removed).
        """
        failure.trap(StoreUnavailable)
        self._unlost[owner] = None

    def _lose(
        self, owner: str, run: Optional[Callable[..., Deferred[Any]]] = None, first: bool = True
    ) -> Deferred[None]:
        """
        Start the lease grace of C{owner}'s workers, in as many bounded
        calls as it takes (by C{run}, default L{_run}).
        """
        script = run or self._run

        def lost(reply: List[Any]) -> Optional[Deferred[None]]:
            if first and reply[1]:
                _log.info("lease grace started", workers=reply[1], grace=self.lease_grace)
            self._removed(reply[2:])
            return self._lose(owner, script, first=False) if reply[0] else None

        return script("lose", owner, self._ms(self.lease_grace)).addCallback(lost)

    def holds(self, owner: Owner) -> bool:
        """
        Whether an update of C{owner} was accepted (or a duplicate) through
        this replica since its connection opened.
        """
        return owner in self._owners

    # -- the front end's side ---------------------------------------------

    def take(self, pool: str) -> Deferred[Optional[Worker]]:
        """
        Take a slot of the head of C{pool}'s queue, if one is free and no
        call waits (see L{IWorkerStore.take}).

        The hottest call: its reply goes to L{_took} with no Deferred but
        the one returned.
        """
        taken: Deferred[Optional[Worker]] = Deferred()
        link = self._link
        if link is None:
            taken.errback(StoreUnavailable("the store is not connected"))
            return taken
        command = self._take_command(pool)
        link.send_then(command, partial(self._took, taken, link, command))
        return taken

    def _took(
        self, taken: Deferred[Optional[Worker]], link: Link, command: bytes, reply: Any
    ) -> None:
        """
        The store's reply to a C{take}: the answer, none, again (expired
        workers removed first), or an error (C{NOSCRIPT}: the script is
        loaded and the call sent again).
        """
        if reply.__class__ is list:
            answer = reply[0]
            if answer:
                if len(reply) > 1:
                    self._removed(reply[1:])
                record = self._records.get(answer)
                taken.callback(record if record is not None else self._answer(answer))
                return
            self._removed(reply[2:])
            if reply[1] == b"again":
                link.send_then(command, partial(self._took, taken, link, command))
            else:
                taken.callback(None)
        elif isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            script = self._next
            self._loaded(
                lambda: link.send(encode_command("SCRIPT", "LOAD", script.source)), script
            ).addCallbacks(
                lambda _: link.send_then(command, partial(self._took, taken, link, command)),
                taken.errback,
            )
        else:
            taken.errback(reply)

    def _take_command(self, pool: str) -> bytes:
        """
        The call of the C{next} script that takes a slot of C{pool} without
        waiting, encoded once per pool (and incarnation).
        """
        command = self._take_commands.get(pool)
        if command is None:
            if len(self._take_commands) >= _MAX_RECORDS:
                self._take_commands.clear()
            command = self._take_commands[pool] = encode_command(
                "EVALSHA", self._next.sha, 0, pool, "", self.replica
            )
        return command

    def next_worker(
        self,
        pool: Optional[str] = None,
        timeout: Optional[float] = None,
        owner: Optional[Owner] = None,
    ) -> Deferred[Worker]:
        """
        Take a slot of the head of C{pool}'s queue, waiting up to C{timeout}
        seconds for one (see L{IWorkerStore.next_worker}).

        A call that may wait is counted, and its timeout runs, from now; if
        it is cancelled before the store answers, a place it got in line is
        withdrawn.  (A call that may not wait, cancelled before the store
        answers, loses the slot it took until the worker's next update.)
        """
        pool_name = pool or DEFAULT_POOL
        refusal: Optional[Exception] = None
        if timeout:
            if len(self._waiters) >= self.max_waiting:
                refusal = Overloaded(f"{self.max_waiting} calls are already waiting")
            elif owner is not None and self._waiting_by.get(owner, 0) >= self.max_waiting_per_owner:
                refusal = Overloaded(
                    f"{self.max_waiting_per_owner} calls of this connection are already waiting"
                )
            else:
                return self._wait(pool_name, timeout, owner)
        return self.take(pool_name).addCallback(self._taken_or_none, pool_name, refusal)

    def _taken_or_none(
        self, worker: Optional[Worker], pool: str, refusal: Optional[Exception]
    ) -> Worker:
        if worker is not None:
            return worker
        raise refusal if refusal is not None else no_free_slot(pool)

    def _wait(self, pool: str, timeout: float, owner: Optional[Owner]) -> Deferred[Worker]:
        def cancel(_: Deferred[Worker]) -> None:
            waiter.cancelled = True
            self._end(waiter)
            if waiter.state == _WAITING:
                self._withdraw(waiter)

        self._tokens += 1
        token = f"{self.replica}/{self._tokens}"
        waiter = _Waiter(Deferred(cancel), pool, token, owner, state=_PENDING)
        waiter.timer = self._clock.callLater(timeout, self._timed_out, waiter)
        self._waiters[token] = waiter
        if owner is not None:
            self._waiting_by[owner] = self._waiting_by.get(owner, 0) + 1
        self._queue(waiter)
        return waiter.deferred

    def _queue(self, waiter: _Waiter) -> None:
        self._run("next", waiter.pool, waiter.token, self.replica).addCallbacks(
            self._queued, self._lost_answer, callbackArgs=(waiter,), errbackArgs=(waiter,)
        )

    def _queued(self, reply: List[Any], waiter: _Waiter) -> None:
        if reply[0]:
            self._removed(reply[1:])
            self._end(waiter)
            if not waiter.cancelled:
                waiter.deferred.callback(self._answer(reply[0]))
            return
        self._removed(reply[2:])
        status = reply[1]
        if status == b"again":
            self._queue(waiter)
        elif status == b"queued":
            waiter.state = _WAITING
            if waiter.cancelled or waiter.timed_out:
                self._withdraw(waiter)
            elif waiter.woken:
                self._collect(waiter)
        else:
            self._end(waiter)
            if status == b"fenced":
                self._rejoin()
                error: Exception = StoreUnavailable("this dispatcher lost its place in the store")
            else:
                error = no_free_slot(waiter.pool)
            if not waiter.cancelled:
                waiter.deferred.errback(error)

    def _end(self, waiter: _Waiter) -> None:
        """
        The call no longer waits on this replica's count (answered, failed
        or cancelled); its token may still be withdrawn.
        """
        if self._waiters.pop(waiter.token, None) is not None and waiter.owner is not None:
            left = self._waiting_by[waiter.owner] - 1
            if left:
                self._waiting_by[waiter.owner] = left
            else:
                del self._waiting_by[waiter.owner]
        if waiter.timer is not None:
            if waiter.timer.active():
                waiter.timer.cancel()
            waiter.timer = None

    def _timed_out(self, waiter: _Waiter) -> None:
        waiter.timer = None
        waiter.timed_out = True
        if waiter.state == _WAITING:
            self._withdraw(waiter)

    def _collect(self, waiter: _Waiter) -> None:
        waiter.state = _COLLECTING
        self._run("collect", self.replica, waiter.token).addCallbacks(
            self._collected, self._lost_answer, callbackArgs=(waiter,), errbackArgs=(waiter,)
        )

    def _collected(self, answer: Optional[bytes], waiter: _Waiter) -> None:
        if answer is not None:
            self._deliver(waiter, answer)
        elif waiter.timed_out or waiter.cancelled:
            self._withdraw(waiter)
        else:
            waiter.state = _WAITING

    def _withdraw(self, waiter: _Waiter) -> None:
        waiter.state = _WITHDRAWING
        self._run("withdraw", waiter.pool, waiter.token, self.replica).addCallbacks(
            self._withdrawn, self._lost_answer, callbackArgs=(waiter,), errbackArgs=(waiter,)
        )

    def _withdrawn(self, answer: bytes, waiter: _Waiter) -> None:
        if answer != b"withdrawn" and answer:
            self._deliver(waiter, answer)
            return
        self._end(waiter)
        if not waiter.cancelled:
            waiter.deferred.errback(
                NoWorkerAvailable(f"no worker of pool {waiter.pool!r} had a free slot in time")
            )

    def _lost_answer(self, failure: Failure, waiter: _Waiter) -> None:
        """
        The store could not be asked for the call's answer: the call fails,
        and its token is withdrawn once the link is back (an answer it was
        handed given back), so that it neither keeps a place in line nor
        takes a slot no one collects.
        """
        self._unsettled[waiter.token] = waiter.pool
        self._end(waiter)
        if not waiter.cancelled and not waiter.deferred.called:
            waiter.deferred.errback(failure)

    def _deliver(self, waiter: _Waiter, answer: bytes) -> None:
        self._end(waiter)
        if waiter.cancelled:

            def unsent(failure: Failure) -> None:
                if failure.check(StoreUnavailable):
                    self._returning.append(answer)

            Deferred.fromCoroutine(self._give_back(self._run, answer)).addErrback(unsent)
            return
        waiter.deferred.callback(self._answer(answer.split(b"\t", 2)[2]))

    # -- heartbeats and fencing -------------------------------------------

    def _fenced(self) -> bool:
        """
        Whether this replica may have been buried by now: it has not renewed
        its place for L{replica_timeout} seconds.
        """
        beat_at = self._beat_at
        return beat_at is None or self._clock.seconds() - beat_at >= self.replica_timeout

    def beat(self) -> Deferred[None]:
        """
        One heartbeat: renew this replica's place in the store and reap
        (expired workers, lapsed replicas), as many bounded calls as it
        takes.  A store that cannot be reached is left to the link, which
        logs it.
        """
        return self._reap().addErrback(lambda failure: failure.trap(StoreUnavailable))

    def _reap(self, leave: bool = False) -> Deferred[None]:
        started = self._clock.seconds()

        def reaped(reply: List[Any]) -> Optional[Deferred[None]]:
            if reply[0] == b"fenced":
                self._rejoin()
                return None
            if not leave:
                self._beat_at = started
            self._removed(reply[2:])
            return self._reap(leave) if reply[1] else None

        return self._run(
            "reap",
            self.replica,
            self._ms(self.replica_timeout),
            self._ms(self.lease_grace),
            1 if leave else 0,
        ).addCallback(reaped)

    def _rejoin(self) -> None:
        """
        This replica was buried: fence it (see L{_fence}) and join again.
        """
        if not self._joined:
            return
        self._fence()
        Deferred.fromCoroutine(self._join(self._run)).addErrback(
            lambda failure: failure.trap(StoreUnavailable)
        )

    def _fence(self) -> None:
        """
        This replica was buried: its calls waiting fail (their place in line
        is gone), the workers its connections held are no longer its, and
        it will join again as a new incarnation.
        """
        _log.warning("replica fenced", replica=self.replica)
        self._joined = False
        self._beat_at = None
        self._owners.clear()
        # Burying took this incarnation's tokens out of line, gave back the
        # answers handed to them and started its owners' lease grace (an
        # answer collected, to give back, is still to give back).
        self._unsettled.clear()
        self._unlost.clear()
        self._incarnation += 1
        self.replica = f"{self.name}.{self._incarnation}"
        self._take_commands.clear()
        for waiter in list(self._waiters.values()):
            self._end(waiter)
            waiter.deferred.errback(StoreUnavailable("this dispatcher lost its place in the store"))

    # -- reading ------------------------------------------------------------

    def stats(self) -> Deferred[StoreStats]:
        """
        The counters of the whole store (every replica's waiting calls).
        """
        return self._run("stats").addCallback(lambda values: StoreStats(*values))

    def pools(self, names: Sequence[str], more: int) -> Deferred[List[PoolFigures]]:
        """
        The figures of the pools C{names} that exist, then of up to C{more}
        others (see the C{pools} script: a named pool's free slots cost
        O(its workers) in the store).
        """
        return self._run("pools", more, *names).addCallback(self._pool_figures)

    @staticmethod
    def _pool_figures(flat: List[Any]) -> List[PoolFigures]:
        return [
            PoolFigures(flat[at].decode(), flat[at + 1], flat[at + 2], flat[at + 3])
            for at in range(0, len(flat) - 3, 4)
        ]

    def available(self) -> bool:
        """
        Whether the link is up and this replica has renewed its place in
        time (it is not fenced).
        """
        link = self._link
        return link is not None and link.ready and not self._fenced()

    def list_workers(
        self, pool: Optional[str], after: Optional[str], limit: int
    ) -> Deferred[WorkerRows]:
        """
        Up to C{limit} workers (of C{pool}) with ids after C{after}, in id
        order.
        """
        return self._run("list", pool or "", after or "", limit).addCallback(self._rows)

    def _rows(self, reply: List[Any]) -> WorkerRows:
        flat, more = reply
        rows: List[RegisteredWorker] = []
        for at in range(0, len(flat), 7):
            worker_id, host, port, pool, capacity, free, left = flat[at : at + 7]
            rows.append(
                RegisteredWorker(
                    worker_id.decode(),
                    host.decode(),
                    int(port),
                    pool.decode(),
                    capacity,
                    free,
                    -1.0 if left < 0 else left / 1000,
                )
            )
        return WorkerRows(rows, bool(more))

    def stop(self) -> Deferred[None]:
        """
        The dispatcher is stopping: fail every waiting call, stop the
        heartbeat, and leave the store (this replica buried at once: its
        tokens withdrawn, slots handed to them given back).
        """
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        for waiter in list(self._waiters.values()):
            self._end(waiter)
            waiter.deferred.errback(NoWorkerAvailable("the dispatcher is shutting down"))
        link = self._link
        if link is None:
            return succeed(None)
        if not self._joined:
            return link.stop()
        self._joined = False
        return (
            self._reap(leave=True)
            .addErrback(lambda failure: failure.trap(StoreUnavailable))
            .addBoth(lambda _: link.stop())
        )


__all__ = ["Link", "RedisStore"]
