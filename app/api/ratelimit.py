"""Per-key rate limits: a token bucket per API key, kept in Redis so that every replica shares it."""

from __future__ import annotations


class RateLimited(Exception):
    """The key has spent its tokens: 429 with the seconds until the next one."""

    def __init__(self, key_id: str, retry_after_s: float) -> None:
        super().__init__(f"API key {key_id!r} is over its rate limit; retry in {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s
