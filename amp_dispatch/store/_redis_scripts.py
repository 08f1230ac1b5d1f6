"""
The shared store's Lua scripts: each call of L{RedisStore} that changes the
queue is one of them, run atomically by the store (C{EVALSHA}), so replicas
sharing one store never answer a slot twice.

Layout, per pool C{P} (every key of a pool has the hash tag C{{P}}):
  - C{{P}:q}: a sorted set of the workers with a free slot, scored by minus
    their free slots; a member is the worker's order (8 bytes), its deadline
    (store milliseconds, empty without one), then C{\tid\tport\thost}.
    Equal scores sort by member, and the order is C{a} and the tick the
    worker entered the pool at while never answered since, C{b} and the tick
    of its last answer otherwise (7 bytes, big-endian): so the head is the
    most free slots, then never answered in entering order, then least
    recently answered.
  - C{{P}:m}: each worker's member (kept while it has no free slot, for its
    order); C{{P}:w}: each worker's state (seq, capacity, ttl, owner, ttl
    deadline, lease deadline, stamp, port, host, tab separated; the stamp
    changes with every accepted update); C{{P}:ids}: its ids, for listing;
    C{{P}:e}: the update tick.
  - C{{P}:wq}: waiting calls' tokens, first come first served (scored by
    C{{P}:wn}).
Across pools: C{amp:where} (each worker's pool), C{amp:pools}, C{amp:dl}
(deadlines of the workers that have one), the counters C{amp:t} (answers
given: the answer tick), C{amp:j} (free slots plus answers given, so the
free slots are C{j - t} and an answer changes neither), C{amp:n} (workers)
and C{amp:wt} (waiting calls), C{amp:replicas} (each replica's heartbeat
deadline), C{amp:o:OWNER} (the workers a scheduler connection holds),
C{amp:r:R:owners}, C{amp:r:R:tok} (its waiting tokens and their pools),
C{amp:r:R:wa} (answers handed to its waiting calls, not yet collected) and
C{amp:primary} (the primary's identity, for the hold rule).  Scripts name
keys themselves: they need one server (Cluster needs a directory of pools).

Invariant: while calls wait in a pool, no worker of the pool has a free
slot (every script that frees a slot serves the waiting calls first), so a
C{NextWorker} needs no look at the waiting line to keep its place.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Optional

#: The most waiting calls an update serves, expired workers a call removes,
#: or items a reap handles, per script call: the bound on one call's work.
BUDGET = 256

# Time on the store's clock, in milliseconds.  Tests read a key instead
# (see L{scripts}), so that they can move the store's time.
_NOW_TIME = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_NOW_KEY = """
local function now()
  return tonumber(redis.call('GET', %s) or '0')
end
"""

_STATE = """
local function state(text)
  local seq, cap, ttl, owner, tdl, ldl, stamp, port, host = string.match(text,
    '^([^\\t]*)\\t(%d+)\\t(%d*)\\t([^\\t]*)\\t(%d*)\\t(%d*)\\t(%d+)\\t(%d+)\\t(.*)$')
  return {seq = seq, cap = tonumber(cap), ttl = ttl, owner = owner, tdl = tdl, ldl = ldl,
    stamp = stamp, port = port, host = host}
end

local function packed(s)
  return table.concat({s.seq, s.cap, s.ttl, s.owner, s.tdl, s.ldl, s.stamp, s.port, s.host},
    '\\t')
end

-- The worker's member after order ORD, and its deadline (the earlier of
-- its ttl's and its lease's; '' for none).
local function member_of(ord, s, wid)
  local dl = s.tdl
  if s.ldl ~= '' and (dl == '' or tonumber(s.ldl) < tonumber(dl)) then dl = s.ldl end
  return ord .. dl .. '\\t' .. wid .. '\\t' .. s.port .. '\\t' .. s.host, dl
end

-- An order: PREFIX and tick N in 7 bytes, big-endian (sorts as N does).
local function order(prefix, n)
  local b7 = n % 256
  n = (n - b7) / 256
  local b6 = n % 256
  n = (n - b6) / 256
  local b5 = n % 256
  n = (n - b5) / 256
  local b4 = n % 256
  n = (n - b4) / 256
  local b3 = n % 256
  n = (n - b3) / 256
  local b2 = n % 256
  n = (n - b2) / 256
  return prefix .. string.char(n % 256, b2, b3, b4, b5, b6, b7)
end

local function reason(s, at)
  if s.tdl ~= '' and tonumber(s.tdl) <= at then return 'ttl expired' end
  return 'lease expired'
end
"""

_DROP = """
-- A pool with no worker and no waiting call goes (its answers counted on).
local function drop_if_empty(pool)
  local P = '{' .. pool .. '}'
  if redis.call('HLEN', P .. ':w') == 0 and redis.call('ZCARD', P .. ':wq') == 0 then
    redis.call('DEL', P .. ':e', P .. ':q', P .. ':m', P .. ':ids', P .. ':wn')
    redis.call('SREM', 'amp:pools', pool)
  end
end

-- Remove a worker; SCORE is its score in the queue, if it is queued.
local function remove(pool, wid, s, member, score)
  local P = '{' .. pool .. '}'
  if score then
    redis.call('ZREM', P .. ':q', member)
    redis.call('INCRBY', 'amp:j', tonumber(score))
  end
  redis.call('DECR', 'amp:n')
  redis.call('HDEL', P .. ':w', wid)
  redis.call('HDEL', P .. ':m', wid)
  redis.call('ZREM', P .. ':ids', wid)
  redis.call('HDEL', 'amp:where', wid)
  if s.tdl ~= '' or s.ldl ~= '' then redis.call('ZREM', 'amp:dl', wid) end
  if s.owner ~= '' then redis.call('SREM', 'amp:o:' .. s.owner, wid) end
  drop_if_empty(pool)
end

-- Remove a worker found by id, if registered; OUT gets id, pool, reason.
local function remove_id(wid, why, at, out)
  local pool = redis.call('HGET', 'amp:where', wid)
  if not pool then return false end
  local P = '{' .. pool .. '}'
  local s = state(redis.call('HGET', P .. ':w', wid))
  local member = redis.call('HGET', P .. ':m', wid)
  remove(pool, wid, s, member, redis.call('ZSCORE', P .. ':q', member))
  if out then
    table.insert(out, wid)
    table.insert(out, pool)
    table.insert(out, why or reason(s, at))
  end
  return true
end
"""

_TAKE = """
-- Take a slot of the head of POOL's queue: the worker's id and its answer
-- (deadline, id, port, host, tab separated); nil when none is free; false
-- when BUDGET expired heads were removed first (call again).  Removed
-- workers go to OUT (id, pool, reason).
local function take(pool, out)
  local P = '{' .. pool .. '}'
  local at
  for _ = 1, @BUDGET@ do
    local popped = redis.call('ZPOPMIN', P .. ':q')
    if #popped == 0 then return nil end
    local rest = string.sub(popped[1], 9)
    local tab = string.find(rest, '\\t', 1, true)
    local wid = string.sub(rest, tab + 1, string.find(rest, '\\t', tab + 1, true) - 1)
    local live = tab == 1
    if not live then
      at = at or now()
      live = tonumber(string.sub(rest, 1, tab - 1)) > at
    end
    if live then
      local fresh = order('b', redis.call('INCR', 'amp:t')) .. rest
      local free = 0 - tonumber(popped[2]) - 1
      if free > 0 then redis.call('ZADD', P .. ':q', 0 - free, fresh) end
      redis.call('HSET', P .. ':m', wid, fresh)
      return wid, rest
    end
    local s = state(redis.call('HGET', P .. ':w', wid))
    redis.call('INCRBY', 'amp:j', tonumber(popped[2]))
    remove(pool, wid, s, popped[1], false)
    table.insert(out, wid)
    table.insert(out, pool)
    table.insert(out, reason(s, at))
  end
  return false
end
"""

_SERVE = """
-- Hand free slots of POOL to its waiting calls, first come first served:
-- the answer kept for the call's replica to collect, the replica woken.
-- Whether calls may still wait with slots free (the budget ran out).
local function serve(pool, out)
  local P = '{' .. pool .. '}'
  for _ = 1, @BUDGET@ do
    local token = redis.call('ZPOPMIN', P .. ':wq')
    if #token == 0 then return false end
    local wid, answer = take(pool, out)
    if not wid then
      redis.call('ZADD', P .. ':wq', token[2], token[1])
      return wid == false
    end
    redis.call('DECR', 'amp:wt')
    local s = state(redis.call('HGET', P .. ':w', wid))
    local replica = string.match(token[1], '^([^/]*)/')
    redis.call('HSET', 'amp:r:' .. replica .. ':wa', token[1],
      pool .. '\\t' .. s.stamp .. '\\t' .. answer)
    redis.call('HDEL', 'amp:r:' .. replica .. ':tok', token[1])
    redis.call('PUBLISH', 'amp:wake:' .. string.match(replica, '^[^.]*'), token[1])
  end
  return redis.call('ZCARD', P .. ':wq') > 0
end

-- A slot answered to a call that never got it goes back to its worker,
-- unless the worker was updated (or removed) since.
local function give_back(pool, wid, stamp, out)
  local P = '{' .. pool .. '}'
  local text = redis.call('HGET', P .. ':w', wid)
  if not text then return false end
  local s = state(text)
  if s.stamp ~= stamp then return false end
  local member = redis.call('HGET', P .. ':m', wid)
  local score = redis.call('ZSCORE', P .. ':q', member)
  local free = score and 0 - tonumber(score) or 0
  if free >= s.cap then return false end
  redis.call('ZADD', P .. ':q', 0 - free - 1, member)
  redis.call('INCR', 'amp:j')
  serve(pool, out)
  return true
end
"""

_OWNERS = """
local function compare(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  local sign = na and -1 or 1
  if na then a, b = string.sub(a, 2), string.sub(b, 2) end
  if #a ~= #b then return (#a < #b and -1 or 1) * sign end
  if a == b then return 0 end
  return (a < b and -1 or 1) * sign
end

-- Write a worker's state and the member and deadline it implies.
local function rewrite(P, wid, s)
  local old = redis.call('HGET', P .. ':m', wid)
  local member, dl = member_of(string.sub(old, 1, 8), s, wid)
  if member ~= old then
    local score = redis.call('ZSCORE', P .. ':q', old)
    if score then
      redis.call('ZREM', P .. ':q', old)
      redis.call('ZADD', P .. ':q', score, member)
    end
    redis.call('HSET', P .. ':m', wid, member)
  end
  if dl == '' then
    if old ~= member then redis.call('ZREM', 'amp:dl', wid) end
  else
    redis.call('ZADD', 'amp:dl', dl, wid)
  end
  redis.call('HSET', P .. ':w', wid, packed(s))
end

-- OWNER (of REPLICA) holds the worker now: false when REPLICA was buried
-- (fenced: it must join again before it holds anything).
local function own(s, wid, owner, replica)
  if s.owner == owner then return true end
  if owner ~= '' then
    if not redis.call('ZSCORE', 'amp:replicas', replica) then return false end
    redis.call('SADD', 'amp:o:' .. owner, wid)
    redis.call('SADD', 'amp:r:' .. replica .. ':owners', owner)
  end
  if s.owner ~= '' then redis.call('SREM', 'amp:o:' .. s.owner, wid) end
  s.owner = owner
  return true
end

-- OWNER's connection is gone: the lease grace of up to BUDGET of its
-- workers starts (GRACE ms; removed at once when 0).  The work left.
local function lose(owner, grace, at, budget, out)
  local wids = redis.call('SPOP', 'amp:o:' .. owner, budget)
  for _, wid in ipairs(wids) do
    local pool = redis.call('HGET', 'amp:where', wid)
    if pool then
      local P = '{' .. pool .. '}'
      local s = state(redis.call('HGET', P .. ':w', wid))
      if s.owner == owner then
        if grace <= 0 then
          s.owner = ''
          remove_id(wid, 'lease expired', at, out)
        else
          s.owner = ''
          s.ldl = string.format('%d', at + grace)
          rewrite(P, wid, s)
        end
      end
    end
  end
  if redis.call('EXISTS', 'amp:o:' .. owner) == 0 then
    redis.call('SREM', 'amp:r:' .. string.match(owner, '^[^:]*') .. ':owners', owner)
  end
  return budget - #wids
end
"""

# ARGV: pool, token ('' for a call that does not wait), replica.  A worker:
# {answer, removed...} (see take); else {'', status, removed...}, status
# none, again (expired heads removed: call again), queued or fenced.
_NEXT = """
local pool, token, replica = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local wid, answer = take(pool, out)
if wid then
  if #out == 0 then return {answer} end
  return {answer, unpack(out)}
end
local status = 'none'
if wid == false then
  status = 'again'
elseif token ~= '' then
  if redis.call('ZSCORE', 'amp:replicas', replica) then
    local P = '{' .. pool .. '}'
    redis.call('ZADD', P .. ':wq', redis.call('INCR', P .. ':wn'), token)
    redis.call('INCR', 'amp:wt')
    redis.call('HSET', 'amp:r:' .. replica .. ':tok', token, pool)
    redis.call('SADD', 'amp:pools', pool)
    status = 'queued'
  else
    status = 'fenced'
  end
end
return {'', status, unpack(out)}
"""

# ARGV: id, host, port, capacity, pool, seq ('' for none), ttl ms ('' for
# none), owner ('' for none), replica.  {outcome, more, removed...}: outcome
# accepted, stale, duplicate or fenced; more: 1 when calls may still wait
# with slots free (call serve).
_UPDATE = """
local wid, host, port, cap, pool = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local seq, ttl, owner, replica = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local P = '{' .. pool .. '}'
local where, O = pool, P
local text = redis.call('HGET', P .. ':w', wid)
if not text then
  where = redis.call('HGET', 'amp:where', wid)
  if where then
    O = '{' .. where .. '}'
    text = redis.call('HGET', O .. ':w', wid)
  end
end
local s, member
if text then
  s = state(text)
  if seq ~= '' and s.seq ~= '' then
    local c = compare(seq, s.seq)
    if c < 0 then return {'stale', 0} end
    if c == 0 then
      if not own(s, wid, owner, replica) then return {'fenced', 0} end
      s.ldl = ''
      if s.ttl ~= '' then s.tdl = string.format('%d', now() + tonumber(s.ttl)) end
      rewrite(O, wid, s)
      return {'duplicate', 0}
    end
  end
  member = redis.call('HGET', O .. ':m', wid)
else
  s = {owner = ''}
end
if not own(s, wid, owner, replica) then return {'fenced', 0} end
local tick = redis.call('INCR', P .. ':e')
local ord, change, queued = nil, cap, false
if text then
  local score = redis.call('ZSCORE', O .. ':q', member)
  queued = score and where == pool
  if where == pool then
    ord = string.sub(member, 1, 8)
    if score then change = cap + tonumber(score) end
  else
    if score then
      redis.call('ZREM', O .. ':q', member)
      redis.call('INCRBY', 'amp:j', tonumber(score))
    end
    redis.call('HDEL', O .. ':w', wid)
    redis.call('HDEL', O .. ':m', wid)
    redis.call('ZREM', O .. ':ids', wid)
    drop_if_empty(where)
    member = nil
  end
end
if not text then redis.call('INCR', 'amp:n') end
if not ord then
  ord = order('a', tick)
  redis.call('HSET', 'amp:where', wid, pool)
  redis.call('ZADD', P .. ':ids', 0, wid)
  redis.call('SADD', 'amp:pools', pool)
end
local had = s.tdl and (s.tdl ~= '' or s.ldl ~= '')
s.seq, s.cap, s.ttl, s.tdl, s.ldl = seq, ARGV[4], ttl, '', ''
s.stamp, s.port, s.host = tick, port, host
if ttl ~= '' then s.tdl = string.format('%d', now() + tonumber(ttl)) end
local fresh, dl = member_of(ord, s, wid)
if dl ~= '' then
  redis.call('ZADD', 'amp:dl', dl, wid)
elseif had then
  redis.call('ZREM', 'amp:dl', wid)
end
if fresh ~= member then
  if queued then redis.call('ZREM', P .. ':q', member) end
  redis.call('HSET', P .. ':m', wid, fresh)
end
redis.call('HSET', P .. ':w', wid, packed(s))
if cap > 0 then
  redis.call('ZADD', P .. ':q', 0 - cap, fresh)
elseif queued and fresh == member then
  redis.call('ZREM', P .. ':q', member)
end
if change ~= 0 then redis.call('INCRBY', 'amp:j', change) end
local out = {}
-- Calls wait only while the pool has no free slot (see the module).
local more = cap > 0 and not queued and serve(pool, out)
local outcome = 'accepted'
if not text then outcome = 'registered' elseif where ~= pool then outcome = 'moved:' .. where end
return {outcome, more and 1 or 0, unpack(out)}
"""

# ARGV: pool.  Serve more waiting calls after an update that ran out of
# budget: {more, removed...}.
_SERVE_MORE = """
local out = {}
local more = serve(ARGV[1], out)
return {more and 1 or 0, unpack(out)}
"""

# ARGV: id.  Its pool, if it was registered ('' if not).
_GONE = """
local pool = redis.call('HGET', 'amp:where', ARGV[1])
if not pool then return '' end
remove_id(ARGV[1], 'gone', 0, nil)
return pool
"""

# ARGV: pool, token, replica.  'withdrawn' (it left the line), the answer
# handed to it (pool, stamp, then as take answers) or '' (neither:
# its answer was collected, given back, or dropped by the hold rule).
_WITHDRAW = """
local pool, token, replica = ARGV[1], ARGV[2], ARGV[3]
if redis.call('ZREM', '{' .. pool .. '}:wq', token) == 1 then
  redis.call('DECR', 'amp:wt')
  redis.call('HDEL', 'amp:r:' .. replica .. ':tok', token)
  drop_if_empty(pool)
  return 'withdrawn'
end
local answer = redis.call('HGET', 'amp:r:' .. replica .. ':wa', token)
if not answer then return '' end
redis.call('HDEL', 'amp:r:' .. replica .. ':wa', token)
return answer
"""

# ARGV: replica, token.  The answer handed to a waiting call, taken (nil if
# none).
_COLLECT = """
local key = 'amp:r:' .. ARGV[1] .. ':wa'
local answer = redis.call('HGET', key, ARGV[2])
if answer then redis.call('HDEL', key, ARGV[2]) end
return answer
"""

# ARGV: pool, id, stamp.  A slot collected for a call that was cancelled
# goes back: {given, removed...}.
_GIVE_BACK = """
local out = {}
local given = give_back(ARGV[1], ARGV[2], ARGV[3], out)
return {given and 1 or 0, unpack(out)}
"""

# ARGV: owner, grace ms.  {more, workers it held before, removed...}.
_LOSE = """
local out = {}
local held = redis.call('SCARD', 'amp:o:' .. ARGV[1])
local left = lose(ARGV[1], tonumber(ARGV[2]), now(), @BUDGET@, out)
return {left <= 0 and redis.call('EXISTS', 'amp:o:' .. ARGV[1]) or 0, held, unpack(out)}
"""

# ARGV: replica, lapse ms.  Registers a replica: its heartbeat runs out
# LAPSE ms from now.
_JOIN = """
redis.call('ZADD', 'amp:replicas', now() + tonumber(ARGV[2]), ARGV[1])
return 1
"""

_BURY = """
-- A replica whose heartbeat lapsed: its scheduler connections' workers get
-- the lease grace, its waiting calls leave their lines, and slots handed to
-- them that they never collected go back.  The work left of BUDGET.
local function bury(dead, grace, at, budget, out)
  local owners = 'amp:r:' .. dead .. ':owners'
  while budget > 0 do
    local owner = redis.call('SRANDMEMBER', owners)
    if not owner then break end
    budget = lose(owner, grace, at, budget, out)
  end
  if budget <= 0 then return budget end
  local tokens = redis.call('HGETALL', 'amp:r:' .. dead .. ':tok')
  for i = 1, #tokens, 2 do
    if redis.call('ZREM', '{' .. tokens[i + 1] .. '}:wq', tokens[i]) == 1 then
      redis.call('DECR', 'amp:wt')
    end
    drop_if_empty(tokens[i + 1])
  end
  redis.call('DEL', 'amp:r:' .. dead .. ':tok')
  local answers = redis.call('HGETALL', 'amp:r:' .. dead .. ':wa')
  redis.call('DEL', 'amp:r:' .. dead .. ':wa')
  for i = 2, #answers, 2 do
    local pool, stamp, wid = string.match(answers[i], '^([^\\t]*)\\t(%d+)\\t%d*\\t([^\\t]*)\\t')
    give_back(pool, wid, stamp, out)
  end
  redis.call('ZREM', 'amp:replicas', dead)
  return budget - #tokens / 2 - #answers / 2 - 1
end
"""

# ARGV: replica, lapse ms, grace ms, leave (1: this replica leaves).  The
# replica's heartbeat, then up to a budget of work: expired workers
# removed, lapsed replicas buried.  {status, more, removed...}: status ok or
# fenced (the replica was buried: it must join again).
_REAP = """
local replica, lapse, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local at = now()
local out = {}
local budget = @BUDGET@
if ARGV[4] == '1' then
  redis.call('ZADD', 'amp:replicas', 0, replica)
elseif redis.call('ZSCORE', 'amp:replicas', replica) then
  redis.call('ZADD', 'amp:replicas', at + lapse, replica)
else
  return {'fenced', 0}
end
local due = redis.call('ZRANGEBYSCORE', 'amp:dl', '-inf', at, 'LIMIT', 0, budget)
for _, wid in ipairs(due) do remove_id(wid, nil, at, out) end
budget = budget - #due
while budget > 0 do
  local dead = redis.call('ZRANGEBYSCORE', 'amp:replicas', '-inf', at, 'LIMIT', 0, 1)
  if #dead == 0 then break end
  budget = bury(dead[1], grace, at, budget, out)
end
return {'ok', budget <= 0 and 1 or 0, unpack(out)}
"""

# ARGV: the primary's identity.  When it differs from the one the store
# knew (a failover, a restart), every worker is held at no free slot until
# its next accepted update, and answers not yet collected are dropped: the
# new primary may lack answers the old one gave, so a worker's free slots
# are known again only from its scheduler.  (A duplicate, such as a
# scheduler's resync, does not refill it: its capacity was already partly
# answered.)  1 if this call held.
_PRIMARY = """
local known = redis.call('GET', 'amp:primary')
if known == ARGV[1] then return 0 end
redis.call('SET', 'amp:primary', ARGV[1])
if not known then return 0 end
for _, pool in ipairs(redis.call('SMEMBERS', 'amp:pools')) do
  local P = '{' .. pool .. '}'
  redis.call('DEL', P .. ':q')
end
redis.call('SET', 'amp:j', redis.call('GET', 'amp:t') or '0')
for _, replica in ipairs(redis.call('ZRANGE', 'amp:replicas', 0, -1)) do
  redis.call('DEL', 'amp:r:' .. replica .. ':wa')
end
return 1
"""

# {workers, free slots, waiting, dispatched}: the store's counters, kept by
# the scripts that change them (a cost that does not grow with the pools).
_STATS = """
local n, j, t, wt = unpack(redis.call('MGET', 'amp:n', 'amp:j', 'amp:t', 'amp:wt'))
t = tonumber(t or '0')
return {tonumber(n or '0'), tonumber(j or '0') - t, tonumber(wt or '0'), t}
"""

# ARGV: more, then pool names.  Flat (pool, workers, free slots, waiting) for
# each named pool that exists, then for up to `more` other pools (a bounded
# scan of amp:pools).  A pool's free slots are added up from its queue:
# O(its workers with a free slot), for metrics scraped every few seconds.
_POOLS = """
local out, named = {}, {}
local function add(p)
  local P = '{' .. p .. '}'
  local workers = redis.call('ZCARD', P .. ':ids')
  local waiting = redis.call('ZCARD', P .. ':wq')
  if workers == 0 and waiting == 0 then return false end
  local free = 0
  local q = redis.call('ZRANGE', P .. ':q', 0, -1, 'WITHSCORES')
  for i = 2, #q, 2 do free = free - tonumber(q[i]) end
  table.insert(out, p)
  table.insert(out, workers)
  table.insert(out, free)
  table.insert(out, waiting)
  return true
end
for i = 2, #ARGV do
  named[ARGV[i]] = true
  add(ARGV[i])
end
local more, cursor, rounds = tonumber(ARGV[1]), '0', 0
while more > 0 and rounds < 256 do
  local page = redis.call('SSCAN', 'amp:pools', cursor, 'COUNT', 100)
  cursor, rounds = page[1], rounds + 1
  for _, p in ipairs(page[2]) do
    if more > 0 and not named[p] then
      named[p] = true
      if add(p) then more = more - 1 end
    end
  end
  if cursor == '0' then break end
end
return out
"""

# ARGV: pool ('' for every pool), after ('' for none), limit.  {rows, more}:
# rows flat (id, host, port, pool, capacity, free, ms to its deadline or -1).
# Each pool gives at most limit + 1 ids, merged in byte order.
_LIST = """
local pool, after, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local pools = pool == '' and redis.call('SMEMBERS', 'amp:pools') or {pool}
local found = {}
for _, p in ipairs(pools) do
  local ids = redis.call('ZRANGEBYLEX', '{' .. p .. '}:ids',
    after == '' and '-' or '(' .. after, '+', 'LIMIT', 0, limit + 1)
  for _, wid in ipairs(ids) do table.insert(found, {wid, p}) end
end
if #pools > 1 then
  table.sort(found, function(a, b)
    local x, y = a[1], b[1]
    for i = 1, math.min(#x, #y) do
      local bx, by = string.byte(x, i), string.byte(y, i)
      if bx ~= by then return bx < by end
    end
    return #x < #y
  end)
end
local rows, at = {}, nil
for i = 1, math.min(#found, limit) do
  local wid, p = found[i][1], found[i][2]
  local P = '{' .. p .. '}'
  local s = state(redis.call('HGET', P .. ':w', wid))
  local member = redis.call('HGET', P .. ':m', wid)
  local score = redis.call('ZSCORE', P .. ':q', member)
  local _, dl = member_of('', s, wid)
  local left = -1
  if dl ~= '' then
    at = at or now()
    left = math.max(0, tonumber(dl) - at)
  end
  for _, value in ipairs({wid, s.host, s.port, p, s.cap, score and 0 - tonumber(score) or 0,
      left}) do
    table.insert(rows, value)
  end
end
return {rows, #found > limit and 1 or 0}
"""


class Script:
    """
    One Lua script: its text and the SHA it runs by.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()


#: Each script's parts, the functions it calls first.
_PARTS = {
    "next": ("now", _STATE, _DROP, _TAKE, _NEXT),
    "update": ("now", _STATE, _DROP, _TAKE, _SERVE, _OWNERS, _UPDATE),
    "serve": ("now", _STATE, _DROP, _TAKE, _SERVE, _SERVE_MORE),
    "gone": (_STATE, _DROP, _GONE),
    "withdraw": (_DROP, _WITHDRAW),
    "collect": (_COLLECT,),
    "give_back": ("now", _STATE, _DROP, _TAKE, _SERVE, _GIVE_BACK),
    "lose": ("now", _STATE, _DROP, _OWNERS, _LOSE),
    "join": ("now", _JOIN),
    "reap": ("now", _STATE, _DROP, _TAKE, _SERVE, _OWNERS, _BURY, _REAP),
    "primary": (_PRIMARY,),
    "stats": (_STATS,),
    "pools": (_POOLS,),
    "list": ("now", _STATE, _LIST),
}

_CACHE: Dict[Optional[str], Dict[str, Script]] = {}


def scripts(time_key: Optional[str] = None) -> Dict[str, Script]:
    """
    The store's scripts by name, their time from the store's clock
    (C{TIME}), or, for tests, from the integer of milliseconds at
    C{time_key}.
    """
    made = _CACHE.get(time_key)
    if made is None:
        now = _NOW_TIME if time_key is None else _NOW_KEY % (_lua_text(time_key),)
        made = _CACHE[time_key] = {
            name: Script(
                "".join(now if part == "now" else part for part in parts).replace(
                    "@BUDGET@", str(BUDGET)
                )
            )
            for name, parts in _PARTS.items()
        }
    return made


def _lua_text(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


__all__ = ["BUDGET", "Script", "scripts"]
