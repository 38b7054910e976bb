"""Progress bars for people watching a terminal; a run whose stderr goes to a file or a pipe gets none.

tqdm redraws a bar by rewriting one terminal line; written to a log file, every redraw becomes a line of
its own, and a training log filled with dozens of bar lines hides the lines that matter.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **options: Any) -> tqdm[T]:
    return tqdm(iterable, disable=not sys.stderr.isatty(), **options)
