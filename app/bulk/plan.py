"""A chunk of checked events -> the apply script's input, column-wise.

The same records as POST /events writes (records.fingerprint for the idempotency key, the layout of
records.RECORD_DTYPE), in the order `online.plan` gives a request's events: by user, then (ts,
fingerprint). As there, the event id is the idempotency key within a user: the file's first event of an
id is sent, a later copy of it counts as a duplicate and a later different event with that id as a
conflict. Done with
numpy sorts over the whole chunk instead of a Python loop per event, so that a user with many events in
a chunk is one script argument.

Records the script would drop on arrival are not sent: a non-purchase older than the store's window is
kept only as the user's first or last record (app/features/capacity.py), so one with an earlier and a
later non-purchase in the same write can never be kept, whatever the store holds. Most of a long
history is such records; leaving them out changes no stored string, since what is kept depends on the
set of events alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.features import spec
from app.features.keys import user_tag
from app.features.online import UserWrite
from app.features.pseudonym import Pseudonyms
from app.features.records import RECORD_DTYPE, fingerprint

# Where each record field comes from in offline.check_events' frame.
_SOURCES = {"ts": "ts_s", "fp": "fp", "kind": "kind", "rating": "rating", "cents": "cents"}


@dataclass
class PlannedWrites:
    writes: dict[str, UserWrite]  # user_tag -> the user's records, sorted, as one piece
    records: npt.NDArray[np.void]  # records sent to the script, in the order of its replies
    owners: npt.NDArray[np.intp]  # each record's user, as a position in user_ids
    user_ids: list[str]  # in the order of `writes`
    repeats: int  # rows that repeat an earlier row of their event id within the chunk: duplicates
    conflicts: int  # rows that reuse an earlier row's event id with other content: rejected
    # Per user: records not sent because the script would drop them, and the position (in `records`)
    # of the user's last non-purchase, which is sent whenever any is left out (-1: none).
    left_out: npt.NDArray[np.int64]
    last_other: npt.NDArray[np.intp]


def encode_records(events: pd.DataFrame) -> npt.NDArray[np.void]:
    """Records (RECORD_DTYPE) of checked events (columns user_id, event_id, ts_s, kind, cents, rating),
    one per row, in row order; each byte-for-byte what records.encode makes of the same event."""
    fingerprints = np.array(list(map(fingerprint, events["event_id"].tolist())), dtype=RECORD_DTYPE["fp"])
    records = np.empty(len(events), dtype=RECORD_DTYPE)
    names = RECORD_DTYPE.names or ()
    for name in names:
        records[name] = fingerprints if name == "fp" else events[_SOURCES[name]].to_numpy()
    return records


def plan_writes(
    events: pd.DataFrame, prefix: str, pseudonyms: Pseudonyms, prune_before: int
) -> PlannedWrites:
    """Group checked events by user for the apply script (keys sorted, repeats removed, records the
    script would drop at once left out); `prune_before` is the script's prune time."""
    if events.empty:
        none = np.empty(0, np.intp)
        return PlannedWrites({}, np.empty(0, RECORD_DTYPE), none, [], 0, 0, np.empty(0, np.int64), none)
    records = encode_records(events)
    users, names = pd.factorize(events["user_id"])
    # The fingerprint as an integer: pandas and numpy sort and match integers several times faster
    # than 6-byte strings, and big-endian order is the byte order the script sorts by.
    fp = _as_integers(records["fp"])
    # Of the rows of one (user, event id), the first in the file is sent; a later one is a copy when its
    # record is the first's byte for byte, else a conflict.
    keys = pd.MultiIndex.from_arrays([users, fp])
    later = keys.duplicated(keep="first")
    firsts = np.flatnonzero(~later)[keys[~later].get_indexer(keys[later])]
    copies = records[later] == records[firsts]
    repeats, conflicts = int(copies.sum()), int((~copies).sum())
    records, users, fp = records[~later], users[~later], fp[~later]
    order = np.lexsort((fp, records["ts"], users))
    records, users = records[order], users[order]
    records, users, left_out, last_other = _leave_out_dropped(records, users, prune_before)
    blob = records.tobytes()
    size = RECORD_DTYPE.itemsize
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    user_ids: list[str] = names.tolist()  # codes 0..n-1 are the users in sorted order
    writes = {
        user_tag(prefix, pseudonyms.of(user)): UserWrite(records=[blob[start * size : end * size]])
        for user, start, end in zip(user_ids, starts.tolist(), ends.tolist(), strict=True)
    }
    owners = np.repeat(np.arange(len(starts), dtype=np.intp), ends - starts)
    return PlannedWrites(writes, records, owners, user_ids, repeats, conflicts, left_out, last_other)


def _as_integers(fingerprints: npt.NDArray[np.bytes_]) -> npt.NDArray[np.int64]:
    """Fixed-size byte strings as the big-endian integers they spell (at most 7 bytes)."""
    width = fingerprints.dtype.itemsize
    padded = np.zeros((len(fingerprints), 8), dtype=np.uint8)
    padded[:, 8 - width :] = np.frombuffer(fingerprints.tobytes(), dtype=np.uint8).reshape(-1, width)
    return padded.view(">i8").reshape(-1).astype(np.int64)


def _leave_out_dropped(
    records: npt.NDArray[np.void], users: npt.NDArray[np.intp], prune_before: int
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """Records (sorted by user, then key) less the old non-purchases between a user's first and last
    non-purchase; the number left out per user; each user's last non-purchase in what remains."""
    n_users = int(users[-1]) + 1  # factorized codes, all present, sorted
    other = np.flatnonzero(records["kind"] != spec.PURCHASE)
    if not len(other):  # purchases only: every one is kept
        return records, users, np.zeros(n_users, dtype=np.int64), np.full(n_users, -1, dtype=np.intp)
    owner = users[other]
    first = np.full(n_users, len(records), dtype=np.intp)
    last = np.full(n_users, -1, dtype=np.intp)
    first[owner[np.r_[True, owner[1:] != owner[:-1]]]] = other[np.r_[True, owner[1:] != owner[:-1]]]
    last[owner[np.r_[owner[1:] != owner[:-1], True]]] = other[np.r_[owner[1:] != owner[:-1], True]]
    position = np.arange(len(records))
    dropped = (
        (records["kind"] != spec.PURCHASE)
        & (records["ts"] < prune_before)
        & (position > first[users])
        & (position < last[users])
    )
    kept_position = np.cumsum(~dropped) - 1
    last_other = np.where(last >= 0, kept_position[np.maximum(last, 0)], -1)
    left_out = np.bincount(users[dropped], minlength=n_users).astype(np.int64)
    return records[~dropped], users[~dropped], left_out, last_other
