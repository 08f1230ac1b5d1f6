"""
The store a dispatcher runs over, made from its configuration: the memory
store, or a replica's link to a shared store.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred

from ..protocol._roles import EncodedWorker
from ..store._address import parse_store_url
from ..store._interface import IWorkerStore
from ..store._link import PrimaryIdentity, StoreLink
from ..store._memory import MemoryStore
from ..store._redis_store import RedisStore
from ._config import DEFAULT_CONFIG, DispatcherConfig


def open_store(reactor: Any, config: DispatcherConfig = DEFAULT_CONFIG) -> IWorkerStore:
    """
    The store C{config} names, with its limits; its workers are answered as
    L{EncodedWorker}s, which the front-end listener answers without
    encoding them again.  C{reactor} is its clock (and, for a shared store,
    where its connections are made).

    @raise ValueError: the store's URL is not one we take.
    """
    address = parse_store_url(config.store, config.store_password)
    if address is None:
        return open_memory_store(reactor, config)
    store = RedisStore(
        reactor,
        lease_grace=config.lease_grace,
        max_waiting=config.max_waiting,
        max_waiting_per_owner=config.max_waiting_per_connection,
        record=EncodedWorker,
        heartbeat_interval=config.heartbeat_interval,
        replica_timeout=config.replica_timeout,
    )

    def ready(identity: PrimaryIdentity) -> Optional[Deferred[None]]:
        return store.connected(f"{identity.replication_id}:{identity.run_id}")

    store.attach(
        StoreLink(
            reactor,
            address,
            channel=store.channel,
            on_message=store.woken,
            on_ready=ready,
            ca_path=config.store_ca,
        )
    )
    return store


def open_memory_store(reactor: Any, config: DispatcherConfig = DEFAULT_CONFIG) -> MemoryStore:
    """
    The in-memory store with C{config}'s limits.
    """
    return MemoryStore(
        reactor,
        lease_grace=config.lease_grace,
        max_waiting=config.max_waiting,
        max_waiting_per_owner=config.max_waiting_per_connection,
        record=EncodedWorker,
    )


__all__ = ["open_memory_store", "open_store"]
