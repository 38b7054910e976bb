"""Where a user's data lives in Redis: the key names, and the hash tags that place them in a cluster.

Keys: `<prefix>:{<bucket>}:<pseudonym>:ev:v2`. The pseudonym is a keyed hash of the user id
(app/features/pseudonym.py), so Redis never holds a raw id. The braces are a Redis Cluster hash tag,
and the tag is a bucket (two hex digits, 0-63) derived from the pseudonym, not the pseudonym itself:
users share slots on purpose. Reading or writing a batch on a cluster takes one command per tag it
touches (a command may not span slots), so a tag per user would make a 1,000-user read 1,000 commands;
with 64 buckets it is at most 64, sent to each primary in one pipeline. The price: a cluster spreads the
users over at most 64 slots, so at most 64 primaries share the data, and resharding moves whole buckets
(1/64 of the users each). On a single Redis the tag changes nothing: a batch is one MGET.

The version names the record layout: a new layout gets a new key, never a misread old string (`v1`
held 14-byte records with 32-bit fingerprints, under a tag per user: never read now, such strings expire
after the retention period, and erasure deletes them). An erased user's pseudonym keeps one key,
`...:<pseudonym>:erased`, for the allowed lateness: the erasure time (plus the future skew), before
which the apply script refuses events. With the user directory on, `...:<pseudonym>:id` holds the user's
id sealed (app/features/directory.py), written and expiring with the records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

BUCKETS: Final = 64
KEY_SUFFIX: Final = "ev:v2"
TOMBSTONE_SUFFIX: Final = "erased"
DIRECTORY_SUFFIX: Final = "id"  # the user's sealed id, with the user directory on (directory.py)
# Every key under the user's tag that holds their data: erasure deletes them. A new layout's key joins here.
DATA_SUFFIXES: Final = (KEY_SUFFIX, DIRECTORY_SUFFIX)


def bucket(pseudonym: str) -> int:
    """The user's bucket: the pseudonym is a keyed hash, so its first digits are uniform."""
    return int(pseudonym[:8], 16) % BUCKETS


def user_tag(prefix: str, pseudonym: str) -> str:
    """What every key of the user starts with: the prefix, the bucket's hash tag and the pseudonym."""
    return f"{prefix}:{{{bucket(pseudonym):02x}}}:{pseudonym}:"


class RecordKeys:
    """`user_tag(prefix, p) + KEY_SUFFIX` for many pseudonyms, at a third of the cost: named once per
    user of every batch read, where the formatting cost as much as the keyed hash itself."""

    def __init__(self, prefix: str) -> None:
        # The bucket is the first 32 bits mod 64, which only their last two hex digits decide.
        assert 256 % BUCKETS == 0
        self._heads = {f"{b:02x}": f"{prefix}:{{{b % BUCKETS:02x}}}:" for b in range(256)}
        self._tail = ":" + KEY_SUFFIX

    def of(self, pseudonym: str) -> str:
        return self._heads[pseudonym[6:8]] + pseudonym + self._tail

    def of_many(self, pseudonyms: Iterable[str]) -> list[str]:
        heads, tail = self._heads, self._tail  # bound once: this runs for every user of a batch read
        return [heads[p[6:8]] + p + tail for p in pseudonyms]


def legacy_keys(prefix: str, pseudonym: str) -> list[str]:
    """Names of earlier layouts, from before users shared bucket tags: never read, but a user's data
    until they expire, so erasure deletes them too (in a slot of their own on a cluster)."""
    return [f"{prefix}:{{{pseudonym}}}:ev:v1"]


def hash_tag(key: str) -> str:
    """The part of a key that picks its Redis Cluster slot: keys with one tag can share a command."""
    return key[key.index("{") + 1 : key.index("}")]


def by_hash_tag(keys: Sequence[str]) -> list[list[int]]:
    """Positions of `keys`, grouped by hash tag (first-seen order)."""
    groups: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(hash_tag(key), []).append(position)
    return list(groups.values())
