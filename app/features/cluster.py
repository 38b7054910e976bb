"""Redis Cluster specifics of the feature store: fast batch reads, and failures as the service answers them.

A batch read is one MGET per hash tag it touches (app/features/keys.py). redis-py's cluster pipeline
routes those commands correctly but spends more per command in Python than a plain pipeline does
(`python -m bench.cluster` measures both: about 1.2x the time for 1,000 users), so reads go as one plain
pipeline to each primary, all primaries at once, using the cluster client's own map of slots to nodes.
When that map is stale (a MOVED or ASK reply during resharding, a node gone in a failover) the read is
done again through the cluster client, which follows redirects and refreshes its map; the next read
then uses the new map.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from app.features.keys import by_hash_tag
from app.redis_client import HiredisPackingConnection, StorePool

# What a node's plain client copies from the cluster client's connection options.
_NODE_OPTIONS = ("host", "port", "socket_timeout", "socket_connect_timeout", "retry", "username", "password")


class ClusterFault(RedisError):
    """Any other failure inside the cluster client, so that it is answered as the store being unavailable
    (503): during node failures redis-py's cluster client has raised errors of its own internals."""


class PartialWrite(RedisError):
    """A cluster node failed during a write that others completed. Nothing is lost by retrying the whole
    request: applying is idempotent, so what was applied comes back as duplicates."""

    def __init__(self, applied: int, total: int, cause: BaseException) -> None:
        super().__init__(
            f"{applied} of {total} events were applied before a store node failed "
            f"({type(cause).__name__}); retrying the whole request is safe"
        )


@contextlib.contextmanager
def cluster_faults() -> Iterator[None]:
    """Cluster client calls: a failure that is not a RedisError becomes a ClusterFault."""
    try:
        yield
    except RedisError:
        raise
    except Exception as error:
        raise ClusterFault(f"{type(error).__name__}: {error}") from error


class ClusterReads:
    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._nodes: dict[str, Redis] = {}  # a plain client per primary, by node name

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """The values of `keys` (None where missing), one MGET per hash tag."""
        groups = by_hash_tag(keys)
        try:
            replies = await self._per_primary(keys, groups)
        except (RedisError, RedisClusterException, OSError):
            await self.close()  # clients of nodes that may be gone; made again from the new map
            replies = await self.via_cluster_client(keys, groups)
        blobs: list[bytes | None] = [None] * len(keys)
        for positions, values in zip(groups, replies, strict=True):
            for i, value in zip(positions, values, strict=True):
                blobs[i] = value
        return blobs

    async def close(self) -> None:
        nodes, self._nodes = self._nodes, {}
        for client in nodes.values():
            await client.aclose()

    async def _per_primary(self, keys: list[str], groups: list[list[int]]) -> list[Any]:
        if not self._cluster.nodes_manager.slots_cache:
            raise RedisClusterException("the cluster map is not loaded yet")  # the cluster client loads it
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index, positions in enumerate(groups):
            node = self._cluster.nodes_manager.get_node_from_slot(key_slot(keys[positions[0]].encode()))
            by_node.setdefault(node.name, (node, []))[1].append(index)

        async def read(node: ClusterNode, indices: list[int]) -> list[Any]:
            async with self._client(node).pipeline(transaction=False) as pipe:
                for index in indices:
                    pipe.mget([keys[i] for i in groups[index]])
                return await pipe.execute()

        nodes = list(by_node.values())
        answers = await asyncio.gather(*(read(node, indices) for node, indices in nodes))
        replies: list[Any] = [None] * len(groups)
        for (_, indices), values in zip(nodes, answers, strict=True):
            for index, value in zip(indices, values, strict=True):
                replies[index] = value
        return replies

    async def via_cluster_client(self, keys: list[str], groups: list[list[int]]) -> list[Any]:
        """Each group's MGET reply, through redis-py's cluster pipeline: the fallback of `mget`, and the
        reference `python -m bench.cluster` measures the per-primary reads against."""
        with cluster_faults():
            async with self._cluster.pipeline() as pipe:
                for positions in groups:
                    # The cluster pipeline blocks mget by name; the raw command is routed by its keys.
                    pipe.execute_command("MGET", *(keys[i] for i in positions))
                replies: list[Any] = await pipe.execute()
        return replies

    def _client(self, node: ClusterNode) -> Redis:
        client = self._nodes.get(node.name)
        if client is None:
            options = {k: v for k, v in node.connection_kwargs.items() if k in _NODE_OPTIONS}
            # Waits for a free connection up to the socket timeout, then counts as overload (429).
            pool = StorePool(
                connection_class=HiredisPackingConnection,
                max_connections=node.max_connections,
                timeout=options.get("socket_timeout") or 1.0,
                **options,
            )
            client = self._nodes[node.name] = Redis.from_pool(pool)
        return client
