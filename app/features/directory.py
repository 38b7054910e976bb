"""The user directory: each known user's id as the shop knows it, sealed, so that users nobody asks for
can still be found and scored (the sweep, `score-batch --all`).

Pseudonyms (app/features/pseudonym.py) cannot be reversed, by design: a Redis dump names no user. A
sweep, though, must say to the CRM which user went quiet. With the directory on (CHURN_USER_DIRECTORY),
every write of a user's events also sets `<user tag>id`: the user's id sealed with AES-GCM under a key
derived from the id secret (random 96-bit nonce, 128-bit tag). Without the secret the value is noise;
with it, the service opens it. The key lives under the user's hash tag and is written by the apply script
in the same atomic call as the records, with the same expiry, only when records were written: it never
outlives the user's data, never appears for an erased user's refused events, and erasure deletes it
with the rest (app/features/keys.py DATA_SUFFIXES).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.features.keys import DIRECTORY_SUFFIX
from app.features.pseudonym import blake2b_key
from app.redis_client import StoreClient

NONCE_BYTES: Final = 12
_PERSON: Final = b"churn-id-seal"  # a key of its own, apart from the pseudonyms' use of the secret


class IdSealer:
    """Seals and opens user ids with a key derived from the id secret."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(hashlib.blake2b(key=blake2b_key(secret), digest_size=32, person=_PERSON).digest())

    def seal(self, user_id: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, user_id.encode(), None)

    def open(self, sealed: bytes) -> str | None:
        """The id, or None for a value this secret did not seal (another secret, or damaged)."""
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None).decode()
        except (InvalidTag, ValueError, UnicodeDecodeError):
            return None


def directory_pattern(prefix: str) -> str:
    """SCAN's MATCH for every directory key under `prefix` (braces are literal in a glob)."""
    return f"{prefix}:{{*}}:*:{DIRECTORY_SUFFIX}"


async def known_users(
    redis: StoreClient, prefix: str, sealer: IdSealer, page: int
) -> AsyncIterator[list[str]]:
    """Every user in the directory, `page` at a time, by SCAN (on a cluster, every primary in turn): never
    all keys in memory. SCAN may return a key twice across a rehash, and a user written during the scan
    may be missed: a sweep takes its users as they are found. Values that do not open are skipped."""
    keys: list[str] = []
    async for key in redis.scan_iter(match=directory_pattern(prefix), count=max(page, 100)):
        keys.append(key.decode() if isinstance(key, bytes) else key)
        if len(keys) >= page:
            yield await _open_page(redis, keys, sealer)
            keys = []
    if keys:
        yield await _open_page(redis, keys, sealer)


async def _open_page(redis: StoreClient, keys: list[str], sealer: IdSealer) -> list[str]:
    # One GET per key in one pipeline: on a cluster a multi-key MGET would have to keep to one slot.
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        values = await pipe.execute()
    ids = [sealer.open(value) for value in values if value is not None]  # gone since the SCAN: skipped
    return [user_id for user_id in ids if user_id is not None]
