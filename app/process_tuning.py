"""Process-wide settings for processes that score in batches: the server, and the bulk commands."""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger("churn")

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MIB = 1 << 20


def settle_after_startup() -> None:
    """Freeze the objects loaded at start-up, and keep freed memory for reuse.

    Everything loaded so far (torch, numpy, the model) lives as long as the process. Unfrozen, each
    full garbage collection walked those objects again, stalling every request under load.
    """
    gc.collect()
    gc.freeze()
    keep_freed_memory()


def keep_freed_memory() -> None:
    """Keep the arrays a batch frees in the heap, for the next batch.

    A batch allocates arrays of a few MiB and frees them milliseconds later. By default glibc serves
    such blocks with fresh mmaps and hands them back to the OS on free, so every batch paid thousands
    of page faults on zeroed pages (decoding a batch's records cost several times more that way). The
    service and the bulk commands both call this.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    settings = ((_M_MMAP_THRESHOLD, 32 * _MIB), (_M_TRIM_THRESHOLD, 512 * _MIB), (_M_TOP_PAD, 64 * _MIB))
    if not all(libc.mallopt(option, value) == 1 for option, value in settings):
        log.warning("could not tune the allocator (mallopt refused a setting)")
