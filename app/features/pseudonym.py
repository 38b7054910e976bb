"""Pseudonymised user ids: Redis sees a keyed hash of each user id, never the id itself.

A pseudonym is the keyed BLAKE2b (128 bits, as hex) of the id's UTF-8 bytes, keyed with the id secret
(CHURN_ID_SECRET or CHURN_ID_SECRET_FILE). Without the secret a Redis dump (SCAN, MONITOR, AOF, RDB)
links no key to a user, and nobody can compute a user's keys. The hash cannot be reversed, so rotating
the secret needs the raw ids (README, "Pseudonymised ids").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from pydantic import SecretStr

MIN_SECRET_BYTES: Final = 32
DIGEST_BYTES: Final = 16  # 128 bits: a collision between two users' ids is out of reach
_MAX_KEY_BYTES: Final = 64  # BLAKE2b's limit on its key
_PERSON: Final = b"churn-user-id"  # separates these hashes from any other use of the same secret


class IdSecretError(RuntimeError):
    """No usable id secret: the service refuses to start."""


def load_secret(inline: SecretStr | None, path: Path | None) -> bytes:
    """The id secret from exactly one of the two settings; a file's trailing newline is not part of it."""
    if inline is not None and path is not None:
        raise IdSecretError("set CHURN_ID_SECRET or CHURN_ID_SECRET_FILE, not both")
    if path is not None:
        try:
            secret = path.read_bytes().rstrip(b"\r\n")
        except OSError as error:
            raise IdSecretError(f"cannot read the id secret file {path}: {error.strerror}") from error
    elif inline is not None:
        secret = inline.get_secret_value().encode()
    else:
        raise IdSecretError(
            "no id secret configured: set CHURN_ID_SECRET_FILE (or CHURN_ID_SECRET) to at least "
            f"{MIN_SECRET_BYTES} random bytes (`python -m app dev-secret` makes a local one)"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise IdSecretError(f"the id secret must be at least {MIN_SECRET_BYTES} bytes, not {len(secret)}")
    return secret


def blake2b_key(secret: bytes) -> bytes:
    """The secret as a BLAKE2b key: itself up to BLAKE2b's limit on key length, else its hash."""
    return secret if len(secret) <= _MAX_KEY_BYTES else hashlib.blake2b(secret).digest()


class Pseudonyms:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise IdSecretError(f"the id secret must be at least {MIN_SECRET_BYTES} bytes")
        self.secret = secret  # other keys derive from it too (the user directory's sealing key)
        key = blake2b_key(secret)
        # Keyed once: each id then costs a copy of the keyed state instead of a new keying, which
        # made the per-id cost about a third lower.
        self._keyed = hashlib.blake2b(key=key, digest_size=DIGEST_BYTES, person=_PERSON)

    @classmethod
    def load(cls, inline: SecretStr | None, path: Path | None) -> Pseudonyms:
        return cls(load_secret(inline, path))

    def of(self, user_id: str) -> str:
        """The user's pseudonym: 32 hex digits, safe inside a Redis Cluster hash tag."""
        state = self._keyed.copy()
        state.update(user_id.encode())
        return state.hexdigest()

    def of_many(self, user_ids: Iterable[str]) -> Iterator[str]:
        """`of` for each id, with the lookups done once rather than per id (batch reads name thousands)."""
        copy = self._keyed.copy
        for user_id in user_ids:
            state = copy()
            state.update(user_id.encode())
            yield state.hexdigest()
