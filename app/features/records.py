"""The stored record layout, defined once: the Python packer, the numpy reader and the Lua script's
formats all derive from FIELDS.

A record is one event, big-endian, sorted by (ts, fp). The apply script relies on (ts, kind, fp)
leading the record, in that order: it reads them with one unpack, and reads a kind with the first bytes
of the fingerprint after it in one call. It finds a stored event id by its fingerprint's bytes at
FP_OFFSET.
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

FP_BYTES: Final = 6
# 48 bits: a user with 10,000 records in the window has all their event ids' fingerprints distinct
# except with probability about n^2 / 2^49 = 1.8e-7 (birthday bound), and a new event id matches one of
# their 10,000 stored fingerprints by chance with probability 10,000 / 2^48 = 3.6e-11 (32 bits would give
# 1.2% and 2.3e-6). Six bytes rather than eight keep a record at 16 bytes.
FIELDS: Final = (
    ("ts", "I"),  # Unix second, u32 (the schema bounds ts to 1970..2106)
    ("kind", "B"),  # event type code
    ("fp", f"{FP_BYTES}s"),  # fingerprint of the event id: the idempotency key within the user
    ("rating", "B"),
    ("cents", "i"),  # amount in cents, i32
)
RECORD: Final = struct.Struct(">" + "".join(code for _, code in FIELDS))


def _numpy_code(code: str) -> str:
    return f"S{code[:-1]}" if code.endswith("s") else ">" + code


RECORD_DTYPE: Final = np.dtype([(name, _numpy_code(code)) for name, code in FIELDS])

# Lua's struct library spells sizes out: "I4" where Python's standard sizes say "I". The fingerprint's
# bytes are read there as one unsigned big-endian number (exact: 48 bits fit a double), which orders
# records as the bytes do in Python.
_LUA_CODES: Final = {
    "B": "B",
    "b": "b",
    "H": "H",
    "h": "h",
    "I": "I4",
    "i": "i4",
    f"{FP_BYTES}s": f"I{FP_BYTES}",
}
LUA_HEAD_FIELDS: Final = ("ts", "kind", "fp")
LUA_HEAD_FORMAT: Final = ">" + "".join(_LUA_CODES[code] for _, code in FIELDS[: len(LUA_HEAD_FIELDS)])
# Bytes before the fingerprint in a record (the head's fields lead it: checked below).
FP_OFFSET: Final = struct.calcsize(">" + "".join(code for _, code in FIELDS[: LUA_HEAD_FIELDS.index("fp")]))

# The script reads the kind as the byte just before the fingerprint.
if (
    RECORD_DTYPE.itemsize != RECORD.size
    or tuple(name for name, _ in FIELDS[: len(LUA_HEAD_FIELDS)]) != LUA_HEAD_FIELDS
    or dict(FIELDS)["kind"] not in ("B", "b")
    or struct.calcsize(">" + dict(FIELDS)["fp"]) != FP_BYTES
):
    raise RuntimeError(
        "record layout: numpy and struct disagree, (ts, kind, fp) do not lead, kind is not a byte, "
        "or fp is not FP_BYTES long"
    )


# Set up once: copying a hash state costs less than half of making one with parameters, per event.
_FP_STATE: Final = hashlib.blake2b(digest_size=FP_BYTES)


def fingerprint(event_id: str) -> bytes:
    """FP_BYTES of the event id's BLAKE2b: what the store knows the event id by."""
    state = _FP_STATE.copy()
    state.update(event_id.encode())
    return state.digest()


def encode(event: Event, ts: int, fp: bytes) -> bytes:
    """The event's record; `ts` and `fp` are its Unix second and fingerprint, already computed.

    The record is also the event's content as far as idempotency goes: a resend of the event id with
    another record (time to the second, type, amount in cents, rating) is a conflict. `items` and a
    fraction of a second are not stored, so they are not compared."""
    return RECORD.pack(
        ts, spec.TYPE_CODE[event.type], fp, event.rating or 0, spec.to_cents(event.amount or 0.0)
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
        # As narrow as stored: less memory traffic than int64 for the same values.
        kind=np.ascontiguousarray(records["kind"]),
        cents=records["cents"].astype(np.int32),
        rating=np.ascontiguousarray(records["rating"]),
        time_ordered=True,  # each user's records are kept sorted, and users follow request order
    )
