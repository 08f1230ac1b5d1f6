"""
The shared store (L{RedisStore}) on real Redis and Valkey servers: the store
conformance suite, as the memory store passes it.
"""

from __future__ import annotations

from tests._redis_harness import RedisHarness, ValkeyHarness
from tests._store_suite import make_store_tests

globals().update(make_store_tests("Redis", RedisHarness))
globals().update(make_store_tests("Valkey", ValkeyHarness))
