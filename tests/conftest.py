"""A real redis-server for the whole session, started by the suite itself."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from app.redis_server import LocalCluster, RedisProcess


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> Iterator[str]:
    """The session's Redis, emptied before each test that uses it."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    yield redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster on loopback: three primaries, each with a replica."""
    cluster = LocalCluster(Path(tmp_path_factory.mktemp("cluster")))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> Iterator[str]:
    """The cluster, every primary emptied before each test that uses it."""
    flush(redis_cluster.url, cluster=True)
    yield redis_cluster.url


@dataclass(frozen=True)
class Backend:
    """Where a test keeps its features: one Redis or a Redis Cluster, with the service settings for it."""

    url: str
    cluster: bool

    @property
    def settings(self) -> dict[str, Any]:
        """Service settings besides the URL."""
        return {"redis_cluster": self.cluster}

    def client(self) -> redis.Redis | redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url) if self.cluster else redis.Redis.from_url(self.url)


@pytest.fixture(params=["one Redis", "Redis Cluster"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test using it runs twice: on one Redis and on a Redis Cluster, both emptied first."""
    if request.param == "one Redis":
        return Backend(request.getfixturevalue("redis_url"), cluster=False)
    return Backend(request.getfixturevalue("cluster_url"), cluster=True)


def flush(url: str, cluster: bool) -> None:
    client = redis.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    with client:
        client.flushall()  # on a cluster: every primary
