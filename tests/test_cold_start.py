"""Users with no history: the cold-start prior, learnt at training users' first events, stored as data."""

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from app.features import spec
from app.features.offline import validate_events
from app.model import bundle
from app.model.postprocess import ColdStart
from app.model.results import NO_HISTORY
from app.model.scorer import ChurnModel
from app.training.cold_start import first_event_prior

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2025, 1, 1, tzinfo=UTC)


def test_the_prior_is_the_churn_rate_in_the_horizon_after_the_first_event() -> None:
    rows = []
    for user, first_day, again in (("a", 0, 10), ("b", 5, None), ("c", 20, 45), ("d", 80, 85)):
        for day in (first_day, again):
            if day is not None:
                at = START + timedelta(days=day)
                rows.append({"event_id": f"{user}{day}", "user_id": user, "type": "purchase",
                             "ts": at.isoformat(), "amount": 10.0})  # fmt: skip
    events = validate_events(pd.DataFrame(rows))
    cutoff = spec.unix_seconds(START + timedelta(days=90))
    # a bought again within 30 days, b never, c on day 45 (25 days later): 1 churner of 3; d's first event
    # is under a horizon before the cutoff, so d's label is not yet known and d does not count.
    prior = first_event_prior(events, pd.Index(["a", "b", "c", "d"]), cutoff, 30)
    assert prior == ColdStart(probability=1 / 3, users=3)
    assert first_event_prior(events, pd.Index(["a", "b"]), cutoff, 30).probability == 0.5


def test_a_user_with_no_history_gets_the_prior_and_the_reason_no_history(tmp_path: Path) -> None:
    source = bundle.load_bundle(ROOT / "model_store")
    shutil.copytree(source.path, tmp_path / "v")
    data = bundle.json_bytes(ColdStart(0.61, 1234).to_json())
    (tmp_path / "v" / bundle.COLD_START).write_bytes(data)
    manifest = json.loads((tmp_path / "v" / bundle.MANIFEST).read_text())
    manifest["files"][bundle.COLD_START] = bundle.sha256(data)
    (tmp_path / "v" / bundle.MANIFEST).write_bytes(bundle.json_bytes(manifest))
    with_prior = ChurnModel(bundle.load_bundle(tmp_path, "v"), device="cpu")
    without = ChurnModel(replace(source, cold_start=None), device="cpu")
    assert with_prior.bundle.cold_start == ColdStart(0.61, 1234)

    raw = np.tile(np.array([f.default for f in spec.FEATURES]), (2, 1))
    raw[0, spec.FEATURE_INDEX["purchase_count_30d"]] = 3.0
    raw[0, spec.FEATURE_INDEX["days_since_last_purchase"]] = 2.0
    known = np.array([True, False])
    scored = with_prior.score(raw, known, explain=True, top_k=5)
    plain = without.score(raw, known, explain=True, top_k=5)
    assert scored.probability[1] == 0.61 and plain.probability[1] != 0.61
    assert scored.probability[0] == plain.probability[0]  # known users: the network, as before
    assert scored.reasons is not None and scored.reasons[1] == [NO_HISTORY]
    answer = scored.users(["known", "new"], [True, True])[1]
    assert answer["known_user"] is False and answer["reasons"] == [NO_HISTORY]
