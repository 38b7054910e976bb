"""The stored record layout, defined once: the Python packer, the numpy dtype (bulk loading), the field
offsets the feature kernel reads records by, and the Lua script's formats all derive from FIELDS.

A record is one event, big-endian, sorted by (ts, fp). The apply script relies on (ts, kind, fp)
leading the record, in that order: it reads them with one unpack, and reads a kind with the first bytes
of the fingerprint after it in one call. It finds a stored event id by its fingerprint's bytes at
FP_OFFSET.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from app.features import _kernel, spec
from app.features.compute import FloatMatrix, features_of_records
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


# The record as the feature kernel reads it (app/features/_kernel.c): where each field it reads lies.
_KERNEL_FIELDS: Final = {"ts": ">u4", "kind": "u1", "rating": "u1", "cents": ">i4"}
_PLACES: Final = {name: RECORD_DTYPE.fields[name] for name in _KERNEL_FIELDS} if RECORD_DTYPE.fields else {}
if any(_PLACES[name][0] != np.dtype(code) for name, code in _KERNEL_FIELDS.items()):
    raise RuntimeError(f"record layout: the feature kernel reads {_KERNEL_FIELDS}")
_FORMAT: Final = {"size": RECORD_DTYPE.itemsize} | {name: place[1] for name, place in _PLACES.items()}
KERNEL_FORMAT: Final = np.array([_FORMAT[name] for name in _kernel.RECORD_LAYOUT], dtype=np.int64)


def features(blobs: list[bytes | None], as_of: int) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
    """MGET replies (one per user, None for unknown users) -> the feature matrix and known-user flags."""
    return features_of_records(blobs, KERNEL_FORMAT, as_of)
