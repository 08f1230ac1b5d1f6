"""
The shared store's side of the C{amp-redis} systems, read by the driver
between phases (never inside a measured window): the store's memory (C{INFO
memory}), whether its replicas have joined, and the over-dispatch check of a
pool, one Lua script over the store's own records.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any, Dict, List

from amp_dispatch.store._resp import PythonReader, ReplyError, encode_command

#: Every worker of pool KEYS-less ARGV[1]: its capacity (from its state),
#: its free slots (minus its score in the queue, 0 when it is out of the
#: queue), and the store's answers given (C{amp:t}, every pool's).  Layout: see
#: C{amp_dispatch/store/_redis_scripts.py}.
CHECK_LUA = """
local P = '{' .. ARGV[1] .. '}'
local w = redis.call('HGETALL', P .. ':w')
local workers, capacity, answered, negative, over, most = 0, 0, 0, 0, 0, 0
for i = 1, #w, 2 do
  local wid = w[i]
  local cap = tonumber(string.match(w[i + 1], '^[^\\t]*\\t(%d+)\\t'))
  local free = 0
  local member = redis.call('HGET', P .. ':m', wid)
  if member then
    local score = redis.call('ZSCORE', P .. ':q', member)
    if score then free = -tonumber(score) end
  end
  workers = workers + 1
  capacity = capacity + cap
  answered = answered + (cap - free)
  if free < 0 then negative = negative + 1 end
  if free > cap then over = over + 1 end
  if cap - free > most then most = cap - free end
end
local t = tonumber(redis.call('GET', 'amp:t') or '0')
return {workers, capacity, answered, negative, over, most, t}
"""


@dataclass
class PoolCheck:
    """
    A pool's counts in the store: C{answered} is the sum over its workers
    of capacity minus free slots (the answers since each worker's update),
    C{negative} the workers whose free slots went below 0, C{above} those
    with more free slots than their capacity, C{answers_counter} the
    store's own count of answers (C{amp:t}, of every pool).
    """

    workers: int
    capacity: int
    answered: int
    negative: int
    above: int
    most_answered: int
    answers_counter: int

    def as_dict(self) -> Dict[str, int]:
        return dict(self.__dict__)


class StoreClient:
    """
    A blocking RESP connection to the store on loopback, for a few commands
    between phases.
    """

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = PythonReader()

    def call(self, *arguments: Any) -> Any:
        self.sock.sendall(encode_command(*arguments))
        while True:
            reply = self.reader.gets()
            if reply is not False:
                if isinstance(reply, ReplyError):
                    raise reply
                return reply
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the store closed the connection")
            self.reader.feed(data)

    def used_memory(self) -> int:
        """
        C{used_memory} of C{INFO memory}: what the store's allocator holds.
        """
        info: bytes = self.call("INFO", "memory")
        for line in info.splitlines():
            if line.startswith(b"used_memory:"):
                return int(line.split(b":", 1)[1])
        raise ValueError("no used_memory in INFO memory")

    def replicas(self) -> int:
        """
        How many replicas have joined (C{amp:replicas}).
        """
        count: int = self.call("ZCARD", "amp:replicas")
        return count

    def check(self, pool: str = "default") -> PoolCheck:
        values: List[int] = self.call("EVAL", CHECK_LUA, 0, pool)
        return PoolCheck(*values)

    def close(self) -> None:
        self.sock.close()
