"""Optional parts of a training run (baselines, importance rankings, report figures) fail soft.

The bundle needs only the MLP, its calibration, the tiers and the segments. A reference model that
cannot converge on this log, or a figure that needs both outcomes in the test split, must not cost the
run its bundle: the failure and its reason go into the report instead.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
MAX_REASON_CHARS = 300


@dataclass
class PartLog:
    failed: dict[str, str] = field(default_factory=dict)  # part -> reason
    warned: dict[str, list[str]] = field(default_factory=dict)  # part -> warnings of a part that completed

    def attempt(self, part: str, compute: Callable[[], T]) -> T | None:
        """compute(), or None with the failure recorded. Warnings are recorded rather than shown, so a
        run reports the same things whether warnings are errors (the test suite) or not (the command)."""
        # Some libraries print diagnostics on failure (lifetimes prints the optimiser's state); the
        # reason recorded here says what failed, and the command's output stays the report.
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("always")
            try:
                result = compute()
            except Exception as error:
                self.failed[part] = describe(error)
                return None
        notes = sorted({f"{w.category.__name__}: {_one_line(str(w.message))}" for w in caught})
        if notes:
            self.warned[part] = notes
        return result

    def failures_by_reason(self) -> dict[str, list[str]]:
        """Parts grouped by their reason: one degenerate split fails several parts for one cause."""
        grouped: dict[str, list[str]] = {}
        for part, reason in self.failed.items():
            grouped.setdefault(reason, []).append(part)
        return grouped


def describe(error: BaseException) -> str:
    text = _one_line(str(error)) or "(no message)"
    return f"{type(error).__name__}: {text}"[:MAX_REASON_CHARS]


def _one_line(text: str) -> str:
    return " ".join(text.split())
