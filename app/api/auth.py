"""API keys with scopes: who may call what.

A key reads `ck_<key id>.<secret>` and travels as `Authorization: Bearer <key>`. The service keeps only
each key's SHA-256 (settings or a keys file), finds the entry by the key id and compares digests in
constant time. Scopes: `events` (ingest), `score` (score and read features), `admin` (erasure, model
operations, audit), `metrics` (Prometheus scrapes). Health and readiness are always open; /docs, /model
and /metrics are open only when named in CHURN_PUBLIC_ENDPOINTS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Scope = Literal["events", "score", "admin", "metrics"]
KEY_PREFIX = "ck_"
KEY_ID_PATTERN = r"^[a-z0-9-]{1,32}$"


class ApiKeyEntry(BaseModel):
    """One configured key: its id, scopes and the hex SHA-256 of the whole key (never the key)."""

    id: str = Field(pattern=KEY_ID_PATTERN)
    scopes: list[Scope] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # Requests per second and bucket size of the key's rate limit (app/api/ratelimit.py); none: unlimited.
    rate_per_s: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)


@dataclass(frozen=True)
class Caller:
    """The key a request was authenticated with."""

    key_id: str
    scopes: frozenset[str]
    rate_per_s: float | None = None
    burst: int | None = None


class Unauthenticated(Exception):
    """No key, or one the service does not know: 401."""


class Forbidden(Exception):
    """A known key without the scope the route needs: 403."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(
    key_id: str, scopes: Sequence[Scope], rate_per_s: float | None = None, burst: int | None = None
) -> tuple[str, ApiKeyEntry]:
    """A fresh random key and the entry that configures it (the key itself is shown once, never stored)."""
    key = f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
    sha256 = digest(key)
    return key, ApiKeyEntry(id=key_id, scopes=list(scopes), sha256=sha256, rate_per_s=rate_per_s, burst=burst)


class Keyring:
    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._entries: dict[str, tuple[bytes, Caller]] = {}
        for entry in entries:
            if entry.id in self._entries:
                raise ValueError(f"API key id {entry.id!r} is configured twice")
            caller = Caller(entry.id, frozenset(entry.scopes), entry.rate_per_s, entry.burst)
            self._entries[entry.id] = (bytes.fromhex(entry.sha256), caller)

    @classmethod
    def load(cls, entries: Iterable[ApiKeyEntry], keys_file: Path | None) -> Keyring:
        """Keys from the settings plus, when given, a JSON file holding a list of entries."""
        from_file: list[ApiKeyEntry] = []
        if keys_file is not None:
            raw = json.loads(keys_file.read_text())
            from_file = [ApiKeyEntry.model_validate(item) for item in raw]
        return cls([*entries, *from_file])

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller behind an `Authorization` header value, or Unauthenticated."""
        if not authorization:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX):
            raise Unauthenticated("the Authorization header must read 'Bearer <key>'")
        key_id = key[len(KEY_PREFIX) :].partition(".")[0]
        stored = self._entries.get(key_id)
        # Digests are compared in constant time; an unknown id still hashes, so timing tells nothing.
        expected, caller = stored if stored else (b"\0" * 32, None)
        if not hmac.compare_digest(hashlib.sha256(key.encode()).digest(), expected) or caller is None:
            raise Unauthenticated("unknown API key")
        return caller

    @staticmethod
    def authorize(caller: Caller, allowed: frozenset[str]) -> None:
        if caller.scopes.isdisjoint(allowed):
            needed = " or ".join(sorted(allowed))
            raise Forbidden(f"API key {caller.key_id!r} lacks the scope this route needs ({needed})")


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """One header of a raw ASGI scope (names arrive lower-cased)."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
