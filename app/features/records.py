"""The stored record layout, defined once: the Python packer, the numpy reader and the Lua script's
format all derive from FIELDS.

A record is one event, big-endian. Records are sorted by (ts, fp), the first two fields: the apply
script relies on (ts, fp, kind) leading the record, in that order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Final

import numpy as np

from app.features import spec
from app.features.compute import EventArrays
from app.schemas import Event

FIELDS: Final = (
    ("ts", "I"),  # Unix second, u32 (the schema bounds ts to 1970..2106)
    ("fp", "I"),  # fingerprint of the event id, u32
    ("kind", "B"),  # event type code
    ("rating", "B"),
    ("cents", "i"),  # amount in cents, i32
)
RECORD: Final = struct.Struct(">" + "".join(code for _, code in FIELDS))
RECORD_DTYPE: Final = np.dtype([(name, ">" + code) for name, code in FIELDS])

# Lua's struct library spells sizes out: "I4" where Python's standard sizes say "I".
_LUA_CODES: Final = {"B": "B", "b": "b", "H": "H", "h": "h", "I": "I4", "i": "i4"}
LUA_HEAD_FIELDS: Final = ("ts", "fp", "kind")
LUA_HEAD_FORMAT: Final = ">" + "".join(_LUA_CODES[code] for _, code in FIELDS[: len(LUA_HEAD_FIELDS)])

# The script reads the kind as the head's last byte, and sorts by the head's first two fields.
if (
    RECORD_DTYPE.itemsize != RECORD.size
    or tuple(name for name, _ in FIELDS[: len(LUA_HEAD_FIELDS)]) != LUA_HEAD_FIELDS
    or dict(FIELDS)["kind"] not in ("B", "b")
):
    raise RuntimeError(
        "record layout: numpy and struct disagree, (ts, fp, kind) do not lead, or kind is not a byte"
    )


def fingerprint(event_id: str) -> int:
    """32 bits of the event id; with the event's second it forms the idempotency key."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest(), "big")


def encode(event: Event, ts: int, fp: int) -> bytes:
    """The event's record; `ts` and `fp` are its Unix second and fingerprint, already computed."""
    return RECORD.pack(
        ts, fp, spec.TYPE_CODE[event.type], event.rating or 0, spec.to_cents(event.amount or 0.0)
    )


def decode(blobs: Sequence[bytes | None]) -> EventArrays:
    """MGET replies (one per user, None for unknown users) -> event arrays, without per-field loops."""
    # map/filter keep the per-user loop in C: a Python-level generator over thousands of replies cost
    # more than all the decoding after it.
    present = [b or b"" for b in blobs]
    counts = np.fromiter(map(len, present), dtype=np.int64, count=len(present)) // RECORD.size
    records = np.frombuffer(b"".join(present), dtype=RECORD_DTYPE)
    return EventArrays(
        n_users=len(blobs),
        user=np.repeat(np.arange(len(blobs), dtype=np.int64), counts),
        ts=records["ts"].astype(np.int64),
        kind=records["kind"].astype(np.int64),
        cents=records["cents"].astype(np.int64),
        rating=records["rating"].astype(np.int64),
        time_ordered=True,  # each user's records are kept sorted, and users follow request order
    )
