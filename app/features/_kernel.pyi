# The compiled feature pass (app/features/_kernel.c); compute.py is its only caller.
from typing import Any

LAYOUT: tuple[str, ...]
REAL_LAYOUT: tuple[str, ...]
RECORD_LAYOUT: tuple[str, ...]
MAX_TYPES: int
MAX_WINDOWS: int

def features(
    user: Any,
    ts: Any,
    kind: Any,
    cents: Any,
    rating: Any,
    as_of: int,
    layout: Any,
    reals: Any,
    out: Any,
    known: Any,
) -> None: ...
def features_from_records(
    blobs: list[bytes | None], record_format: Any, as_of: int, layout: Any, reals: Any, out: Any, known: Any
) -> tuple[bytes, bytes, bytes]: ...
