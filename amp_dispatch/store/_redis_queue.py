"""
The most-able-worker queue in Redis or Valkey, one atomic script per call:
the core the shared store (the next steps: waiting calls, ttl and leases on
the store's clock, replica heartbeats) is built on.  Not an L{IWorkerStore}
yet: it answers C{update}, C{take}, C{gone}, C{list_workers} and C{stats} as
the memory store does (a differential test checks it against real servers).

Layout, per pool C{P}: C{{P}:q}, a sorted set of the workers with a free
slot, scored by minus their free slots, each member its order then
C{\\tid\\thost\\tport}; equal scores sort by member, and the order is
C{a} and the hex tick it entered the pool at for a worker never answered
since, C{b} and the tick of its last answer otherwise, so the head is: most
free slots, then never answered in entering order, then least recently
answered (the memory store's order).  C{{P}:t}, the pool's tick;
C{{P}:ids}, its worker ids (for listing); C{{P}:w:ID}, a worker's hash (seq,
capacity, free slots, host, port, order, member).  Across pools:
C{amp:where} (each worker's pool), C{amp:ids} (every worker id) and
C{amp:stats} (workers, capacities added up, answers since the workers' last
updates, and answers before: free slots and answers given follow).
Scripts name pool keys themselves, so they need one server (Cluster needs a
directory: a later step).
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from .._records import RegisteredWorker, Worker
from ._interface import StoreStats, UpdateOutcome, WorkerReport, WorkerRows
from ._redis import RedisProtocol
from ._resp import ReplyError, Value

# Lua helpers: integer text compared without floats (seq is a signed 64-bit
# number, beyond a double's exact range).
_COMPARE = """
local function compare(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  local sign = na and -1 or 1
  if na then a, b = string.sub(a, 2), string.sub(b, 2) end
  if #a ~= #b then return (#a < #b and -1 or 1) * sign end
  if a == b then return 0 end
  return (a < b and -1 or 1) * sign
end
"""

_UPDATE = (
    _COMPARE
    + """
local wid, host, port, pool, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local cap = tonumber(ARGV[4])
local where = redis.call('HGET', 'amp:where', wid)
local old = where and redis.call('HMGET', '{' .. where .. '}:w:' .. wid,
  'seq', 'cap', 'free', 'ord', 'mem')
if old and seq ~= '' and old[1] ~= '' then
  local c = compare(seq, old[1])
  if c < 0 then return 'stale' end
  if c == 0 then return 'duplicate' end
end
local key = '{' .. pool .. '}:w:' .. wid
local ord
if old then
  local answered = tonumber(old[2]) - tonumber(old[3])
  redis.call('HINCRBY', 'amp:stats', 'asg', 0 - answered)
  redis.call('HINCRBY', 'amp:stats', 'released', answered)
  redis.call('HINCRBY', 'amp:stats', 'cap', cap - tonumber(old[2]))
  if old[5] ~= '' then redis.call('ZREM', '{' .. where .. '}:q', old[5]) end
  if where ~= pool then
    redis.call('DEL', '{' .. where .. '}:w:' .. wid)
    redis.call('ZREM', '{' .. where .. '}:ids', wid)
    old = false
  else
    ord = old[4]
  end
else
  redis.call('HINCRBY', 'amp:stats', 'workers', 1)
  redis.call('HINCRBY', 'amp:stats', 'cap', cap)
  redis.call('ZADD', 'amp:ids', 0, wid)
end
if not old then
  ord = string.format('a%014x', redis.call('INCR', '{' .. pool .. '}:t'))
  redis.call('HSET', 'amp:where', wid, pool)
  redis.call('ZADD', '{' .. pool .. '}:ids', 0, wid)
end
local member = ''
if cap > 0 then
  member = ord .. '\\t' .. wid .. '\\t' .. host .. '\\t' .. port
  redis.call('ZADD', '{' .. pool .. '}:q', -cap, member)
end
redis.call('HSET', key, 'seq', seq, 'cap', cap, 'free', cap, 'host', host, 'port', port,
  'ord', ord, 'mem', member)
return 'accepted'
"""
)

# A member after its order: \\tid\\thost\\tport (an id has no control
# character; a host may have tabs, a port has none).
_FIELDS = "'^\\t([^\\t]*)\\t(.*)\\t(%d+)$'"

# Five redis.calls: the pop, the tick, the member back (if a slot is left),
# the worker's order and free slots, the answers counted.
_TAKE = (
    """
local pool = ARGV[1]
local popped = redis.call('ZPOPMIN', '{' .. pool .. '}:q')
if #popped == 0 then return false end
local free = 0 - tonumber(popped[2]) - 1
local payload = string.sub(popped[1], 16)
local wid, host, port = string.match(payload, """
    + _FIELDS
    + """)
local ord = string.format('b%014x', redis.call('INCR', '{' .. pool .. '}:t'))
local fresh = ''
if free > 0 then
  fresh = ord .. payload
  redis.call('ZADD', '{' .. pool .. '}:q', 0 - free, fresh)
end
redis.call('HSET', '{' .. pool .. '}:w:' .. wid, 'ord', ord, 'mem', fresh, 'free', free)
redis.call('HINCRBY', 'amp:stats', 'asg', 1)
return {wid, host, port}
"""
)

_GONE = """
local wid = ARGV[1]
local where = redis.call('HGET', 'amp:where', wid)
if not where then return 0 end
local key = '{' .. where .. '}:w:' .. wid
local w = redis.call('HMGET', key, 'cap', 'free', 'mem')
if w[3] ~= '' then redis.call('ZREM', '{' .. where .. '}:q', w[3]) end
redis.call('DEL', key)
redis.call('HDEL', 'amp:where', wid)
redis.call('ZREM', 'amp:ids', wid)
redis.call('ZREM', '{' .. where .. '}:ids', wid)
local answered = tonumber(w[1]) - tonumber(w[2])
redis.call('HINCRBY', 'amp:stats', 'workers', -1)
redis.call('HINCRBY', 'amp:stats', 'cap', 0 - tonumber(w[1]))
redis.call('HINCRBY', 'amp:stats', 'asg', 0 - answered)
redis.call('HINCRBY', 'amp:stats', 'released', answered)
return 1
"""

# ARGV: pool ('' for every pool), after ('' for none), limit.  Returns the
# rows, flat, and whether more follow: limit + 1 ids read, at most.
_LIST = """
local pool, after, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYLEX', pool == '' and 'amp:ids' or '{' .. pool .. '}:ids',
  after == '' and '-' or '(' .. after, '+', 'LIMIT', 0, limit + 1)
local rows = {}
for at = 1, math.min(#ids, limit) do
  local wid = ids[at]
  local where = redis.call('HGET', 'amp:where', wid)
  local w = redis.call('HMGET', '{' .. where .. '}:w:' .. wid, 'host', 'port', 'cap', 'free')
  table.insert(rows, wid)
  table.insert(rows, w[1])
  table.insert(rows, w[2])
  table.insert(rows, where)
  table.insert(rows, w[3])
  table.insert(rows, tonumber(w[4]))
end
return {rows, #ids > limit and 1 or 0}
"""


class _Script:
    """
    One Lua script: its text and the SHA it runs by.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()


_SCRIPTS: Dict[str, _Script] = {
    name: _Script(source)
    for name, source in {"update": _UPDATE, "take": _TAKE, "gone": _GONE, "list": _LIST}.items()
}


class RedisQueue:
    """
    The queue on one Redis or Valkey server, over one connection.
    """

    def __init__(self, redis: RedisProtocol) -> None:
        self._redis = redis
        # Scripts being loaded, and who waits for them, by SHA.
        self._loading: Dict[str, List[Deferred[None]]] = {}

    async def _run(self, name: str, *arguments: Value) -> Any:
        """
        Run a script by its SHA; when the store does not hold it (after a
        restart or a C{SCRIPT FLUSH}: C{NOSCRIPT}, which runs nothing), load
        it once, whatever the number of calls that met it, and run it again.
        """
        script = _SCRIPTS[name]
        try:
            return await self._redis.execute("EVALSHA", script.sha, 0, *arguments)
        except ReplyError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        await self._loaded(script)
        return await self._redis.execute("EVALSHA", script.sha, 0, *arguments)

    def _loaded(self, script: _Script) -> Deferred[None]:
        """
        Fires once C{script} is loaded (one C{SCRIPT LOAD} for every caller
        waiting at the time).
        """
        loaded: Deferred[None] = Deferred()
        waiting = self._loading.get(script.sha)
        if waiting is not None:
            waiting.append(loaded)
            return loaded
        waiting = self._loading[script.sha] = [loaded]

        def done(result: object) -> None:
            for each in self._loading.pop(script.sha):
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(None)

        self._redis.execute("SCRIPT", "LOAD", script.source).addBoth(done)
        return loaded

    def update(self, report: WorkerReport) -> Deferred[UpdateOutcome]:
        """
        Apply a C{WorkerUpdate} (without ttl: a later step).
        """
        return Deferred.fromCoroutine(self._update(report))

    async def _update(self, report: WorkerReport) -> UpdateOutcome:
        worker_id, host, port, capacity, pool, seq, _ = report
        outcome = await self._run(
            "update",
            worker_id,
            host,
            port,
            capacity,
            pool or "default",
            "" if seq is None else seq,
        )
        return {
            b"accepted": UpdateOutcome.ACCEPTED,
            b"stale": UpdateOutcome.STALE,
            b"duplicate": UpdateOutcome.DUPLICATE,
        }[outcome]

    def take(self, pool: str) -> Deferred[Optional[Worker]]:
        """
        Take a slot of the head of C{pool}'s queue, if one is free.
        """
        return Deferred.fromCoroutine(self._take(pool))

    async def _take(self, pool: str) -> Optional[Worker]:
        taken = await self._run("take", pool)
        if taken is None:
            return None
        worker_id, host, port = taken
        return Worker(worker_id.decode(), host.decode(), int(port))

    def gone(self, worker_id: str) -> Deferred[bool]:
        """
        Remove a worker; whether it was registered.
        """
        return Deferred.fromCoroutine(self._gone(worker_id))

    async def _gone(self, worker_id: str) -> bool:
        return bool(await self._run("gone", worker_id))

    def list_workers(
        self, pool: Optional[str], after: Optional[str], limit: int
    ) -> Deferred[WorkerRows]:
        """
        Up to C{limit} workers (of C{pool}) with ids after C{after}, in id
        order.
        """
        return Deferred.fromCoroutine(self._list(pool, after, limit))

    async def _list(self, pool: Optional[str], after: Optional[str], limit: int) -> WorkerRows:
        flat, more = await self._run("list", pool or "", after or "", limit)
        rows: List[RegisteredWorker] = []
        for at in range(0, len(flat), 6):
            worker_id, host, port, where, capacity, free = flat[at : at + 6]
            rows.append(
                RegisteredWorker(
                    worker_id.decode(),
                    host.decode(),
                    int(port),
                    where.decode(),
                    int(capacity),
                    int(free),
                    -1.0,
                )
            )
        return WorkerRows(rows, bool(more))

    def stats(self) -> Deferred[StoreStats]:
        """
        The queue's counters (no waiting calls yet).
        """
        return Deferred.fromCoroutine(self._stats())

    async def _stats(self) -> StoreStats:
        workers, capacity, answered, released = (
            int(value or 0)
            for value in await self._redis.execute(
                "HMGET", "amp:stats", "workers", "cap", "asg", "released"
            )
        )
        return StoreStats(workers, capacity - answered, 0, answered + released)


__all__ = ["RedisQueue"]
