"""
The store conformance suite through L{LaterStore}: every answer a Deferred,
as a store in another process answers; what the suite asks of a store holds
whether its answers come at once or later.
"""

from __future__ import annotations

from tests._store_suite import make_store_tests
from tests._stores import LaterHarness

globals().update(make_store_tests("Later", LaterHarness))
