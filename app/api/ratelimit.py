"""Per-key rate limits: a token bucket per API key, kept in Redis so that every replica shares it.

A request costs one token. Asking Redis for every request would add a round trip to each of thousands
of requests a second, so each process leases tokens in small blocks (about 50 ms of the key's rate) and
spends them locally; Redis refills the shared bucket by its own clock. The price of leasing: a replica
can hold up to one block it has not spent yet, so with N replicas the limit is exact to within N blocks.
A key without a configured rate is not limited.
"""

from __future__ import annotations

import logging
import math

from redis.exceptions import RedisClusterException, RedisError

from app.api.auth import Caller
from app.redis_client import StoreClient

log = logging.getLogger("churn")

LEASE_SECONDS = 0.05  # the tokens one process takes from the shared bucket at a time, in seconds of rate

# KEYS[1]: the key's bucket; ARGV: rate per second, burst, tokens wanted. Returns {granted, wait seconds}.
# Redis's own clock (TIME) refills the bucket, so replicas' clocks never disagree about it.
TOKEN_BUCKET = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(stored[1]) or burst
local at = tonumber(stored[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if granted == 0 then wait = (1 - tokens) / rate end
return {granted, tostring(wait)}
"""


class RateLimited(Exception):
    """The key has spent its tokens: 429 with the seconds until the next one."""

    def __init__(self, key_id: str, retry_after_s: float) -> None:
        super().__init__(f"API key {key_id!r} is over its rate limit; retry in {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s


class RateLimiter:
    def __init__(self, redis: StoreClient, prefix: str) -> None:
        self._bucket = redis.register_script(TOKEN_BUCKET)  # EVALSHA, loading the script when missing
        self._prefix = prefix
        self._leased: dict[str, int] = {}  # key id -> tokens this process holds

    async def admit(self, caller: Caller) -> None:
        """Spend one of the caller's tokens, or raise RateLimited."""
        if caller.rate_per_s is None:
            return
        held = self._leased.get(caller.key_id, 0)
        if held > 0:
            self._leased[caller.key_id] = held - 1
            return
        burst = caller.burst or max(1, math.ceil(caller.rate_per_s))
        want = max(1, min(burst, int(caller.rate_per_s * LEASE_SECONDS)))
        key = f"{self._prefix}:ratelimit:{{{caller.key_id}}}"
        try:
            granted, wait = await self._bucket(keys=[key], args=[caller.rate_per_s, burst, want])
        except (RedisError, RedisClusterException) as error:
            # The limit protects Redis and the CPU; with Redis unreachable the request fails on its own.
            log.warning("rate limit not checked for key %s: %s", caller.key_id, error)
            return
        if int(granted) == 0:
            raise RateLimited(caller.key_id, float(wait))
        self._leased[caller.key_id] = self._leased.get(caller.key_id, 0) + int(granted) - 1
