"""Report parts on their own: segment names and sizes on CDNOW, progress bars only on a terminal."""

from __future__ import annotations

import os
import sys

import pytest

from app.model.preprocess import Preprocessor
from app.training import cdnow, segmentation
from app.training.datasets import user_split
from app.training.progress import progress


def test_cdnow_segments_have_distinct_plain_names_and_their_sizes() -> None:
    # Purchases only: most clusters sit far above average on lifetime purchases, and used to be named
    # "loyal buyers (high ...)" four times over.
    events = cdnow.master_events()
    train = user_split(events, cdnow.CALIBRATION_END, cdnow.HOLDOUT_DAYS, cdnow.sample_user_ids(), 7).train
    scaled = Preprocessor.fit(train.X).transform(train.X)
    segments = segmentation.fit_segments(scaled, 5, seed=7)
    names = segments.names
    assert len(set(names)) == 5
    assert not any(mark in name for name in names for mark in "()'_")
    assert "lapsed" in names and "bought in the last week" in names
    sizes = segmentation.profile(segments, scaled, train.y)
    assert [s["name"] for s in sizes] == list(names)
    assert sum(s["users"] for s in sizes) == len(train.y)
    lapsed = next(s for s in sizes if s["name"] == "lapsed")
    recent = next(s for s in sizes if s["name"] == "bought in the last week")
    assert lapsed["churn_rate"] > recent["churn_rate"]


def test_progress_bars_draw_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress(range(3)).disable  # the suite's stderr is captured, as a log file would be
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        bar = progress(range(3), desc="on a terminal")
        assert not bar.disable
        bar.close()
    os.close(leader)
