"""Redis clients: the store's pool, which tells overload from an outage, and a separate health probe."""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.config import Settings


class HiredisPackingConnection(Connection):
    """Packs commands with hiredis (C) instead of redis-py's Python packer, which the asyncio client
    always uses: for an MGET of 2,048 keys that packer cost more than decoding all the replies."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " not in name:  # "SCRIPT LOAD" and the like need splitting
            try:
                return [hiredis.pack_command(args)]
            except TypeError:  # an argument hiredis does not take (memoryview, ...): the general path
                pass
        packed: list[bytes] = super().pack_command(*args)
        return packed


class PoolExhausted(Exception):
    """Every pooled connection stayed busy for the whole wait: the service is overloaded, Redis is not
    down. Deliberately not a RedisError, so it is answered 429, never 503."""


class StorePool(BlockingConnectionPool):
    """Waits a bounded time for a free connection instead of failing at once, and reports a wait that
    ran out as PoolExhausted (redis-py raises the ConnectionError of a dead server)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as error:
            if isinstance(error.__cause__, asyncio.TimeoutError):
                raise PoolExhausted from error
            raise


def _options(settings: Settings) -> dict[str, Any]:
    # Explicit timeouts and no retries: a request must fail fast (503) rather than hang while Redis
    # is down or paused.
    return {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }


# The store's client: one Redis, or a Redis Cluster (app/features/online.py groups commands by slot).
StoreClient = aredis.Redis | RedisCluster

# A cluster call retried once, after the client has refreshed its map of the cluster: enough to follow a
# failover once a replica has taken over, without the default's seconds of backoff while it has not.
CLUSTER_RETRIES = 1


def connect_store(settings: Settings) -> StoreClient:
    if settings.redis_cluster:
        return _connect_cluster(settings, settings.redis_max_connections)
    # TLS and unix-socket URLs keep redis-py's own connection classes.
    plain_tcp = settings.redis_url.startswith("redis://")
    pool = StorePool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
        **({"connection_class": HiredisPackingConnection} if plain_tcp else {}),
        **_options(settings),
    )
    return aredis.Redis.from_pool(pool)


def _connect_cluster(settings: Settings, max_connections: int) -> RedisCluster:
    # Connections per node. A cluster node's pool does not wait for a free connection: an exhausted one
    # raises MaxConnectionsError at once, which the service answers as overload (429), like PoolExhausted.
    return RedisCluster.from_url(
        settings.redis_url,
        max_connections=max_connections,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=Retry(NoBackoff(), CLUSTER_RETRIES),
    )


def connect_probe(settings: Settings) -> StoreClient:
    """Connections of its own, so /readyz measures whether Redis answers, not how busy the store is."""
    if settings.redis_cluster:
        return _connect_cluster(settings, 2)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=2, timeout=settings.redis_timeout_s, **_options(settings)
    )
    return aredis.Redis.from_pool(pool)
