"""Reasons: added log-odds of churn that do not vanish for the riskiest users, each with the value typical
of customers who stay and a sentence a person reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.features import spec
from app.model import bundle
from app.model.reason_text import EXPLICIT, ReasonTexts, wording_of
from app.model.typical import TypicalValues
from tests.bundles import committed, feature_rows, simulated_events, variant
from tests.helpers import before, event
from tests.live import live_server

# An unhappy customer: 50 refunds, 50 support contacts and 50 one-star reviews over the last two days.
UNHAPPY = [
    event("u-unhappy", kind, before(days=i / 25), f"{kind}-{i}", **fields)
    for i in range(50)
    for kind, fields in (("refund", {"amount": 50.0}), ("support_contact", {}), ("review", {"rating": 1}))
]


def typical_of_a_population() -> TypicalValues:
    """Medians of a simulated population's features, as a bundle would store them."""
    raw = feature_rows(simulated_events(seed=3, users=400))
    return TypicalValues.of_retained(spec.FEATURE_NAMES, raw, np.zeros(len(raw), dtype=np.int64))


def store_with_typical_values(root: Path, typical: TypicalValues) -> Path:
    store = root / "model_store"
    store.mkdir()
    name = variant(store, "with-typical", extra_files={bundle.REASONS: bundle.json_bytes(typical.to_json())})
    bundle.set_current(store, name)
    return store


def test_the_riskiest_users_get_reasons_of_order_one_in_log_odds(redis_url: str, tmp_path: Path) -> None:
    typical = typical_of_a_population()
    store = store_with_typical_values(tmp_path, typical)
    with live_server(redis_url, model_store=store) as server, server.client() as http:
        assert http.post("/events", json={"events": UNHAPPY}).json()["accepted"] == len(UNHAPPY)
        [answer] = http.post("/score", json={"user_ids": ["u-unhappy"]}).json()["results"]
    p = answer["churn_probability"]
    assert p > 0.999 and answer["risk_tier"] == "high"  # saturated: dp/dlogit = slope x p(1-p) is ~0
    contributions = [reason["contribution"] for reason in answer["reasons"]]
    assert len(contributions) == server.settings.explain_top_k
    assert contributions == sorted(contributions, reverse=True)
    assert 0.1 <= contributions[0] <= 10 and contributions[-1] > 0.01
    # The same reasons on the probability scale, x p(1-p): next to nothing, where they matter most.
    assert contributions[0] * p * (1 - p) < 1e-2
    for reason in answer["reasons"]:
        column = spec.FEATURE_INDEX[reason["feature"]]
        assert reason["typical_value"] == pytest.approx(typical.values[column])
        assert reason["text"].endswith(
            f"(customers who stay: typically {_written(reason['feature'], typical)})"
        )
    # Each sentence begins with what the user did, the value as a person reads it (50 of each event).
    for reason in answer["reasons"]:
        wording = wording_of(reason["feature"])
        assert wording is not None
        assert reason["text"].startswith(wording.phrase(reason["value"], wording.is_special(reason["value"])))
    assert any(reason["text"].startswith("50 ") for reason in answer["reasons"])


def _written(feature: str, typical: TypicalValues) -> str:
    wording = wording_of(feature)
    assert wording is not None
    return wording.number(float(typical.values[spec.FEATURE_INDEX[feature]]))


def test_every_feature_has_wording() -> None:
    unworded = [name for name in spec.FEATURE_NAMES if wording_of(name) is None]
    assert unworded == [], "add an entry to app/model/reason_text.py for each"
    assert set(EXPLICIT) <= set(spec.FEATURE_NAMES)  # no wording for a feature that is gone


@pytest.mark.parametrize(
    ("feature", "value", "usual", "phrase", "usual_written"),
    [
        ("refund_count_30d", 3.0, 0.0, "3 refunds in the last 30 days", "0"),
        ("refund_count_1d", 1.0, 0.5, "1 refund in the last day", "0.5"),
        ("days_since_last_purchase", 45.3, 12.0, "last purchase 45 days ago", "12"),
        ("days_since_last_purchase", spec.RECENCY_CAP_DAYS, 9.0, "no purchase in the last 730 days", "9"),
        ("purchase_gap_mean_days", 0.3, 20.0, "0 days between purchases on average", "20"),
        ("purchase_gap_mean_days", 0.0, 20.0, "fewer than 2 purchases so far", "20"),
        ("purchase_amount_30d", 0.0, 54.2, "spent 0.00 in the last 30 days", "54.20"),
        (
            "cart_conversion_30d",
            0.25,
            0.5,
            "bought 25% of what was put in the cart in the last 30 days",
            "50%",
        ),
        ("low_rating_count_90d", 4.0, 0.0, "4 reviews rated 2 or lower in the last 90 days", "0"),
    ],
)
def test_the_text_says_the_value_and_the_typical_value(
    feature: str, value: float, usual: float, phrase: str, usual_written: str
) -> None:
    column = np.array([spec.FEATURE_INDEX[feature]])
    typical = np.full(spec.N_FEATURES, np.nan)
    typical[column] = usual
    texts = ReasonTexts(spec.FEATURE_NAMES, typical)
    assert texts.sentences(column, np.array([value])) == [
        f"{phrase} (customers who stay: typically {usual_written})"
    ]
    # Without a typical value (a bundle that stores none) the sentence stops after the value.
    assert ReasonTexts(spec.FEATURE_NAMES, None).sentences(column, np.array([value])) == [phrase]


def test_sentences_made_once_per_distinct_value_are_each_pairs_own() -> None:
    rng = np.random.default_rng(5)
    texts = ReasonTexts(spec.FEATURE_NAMES, rng.random(spec.N_FEATURES) * 10)
    features = rng.integers(0, spec.N_FEATURES, 2_000)
    values = rng.integers(0, 40, 2_000) / 4  # exact in binary: rounding for writing keeps each value
    values[:5] = spec.RECENCY_CAP_DAYS
    expected = [texts.sentence(int(f), float(v)) for f, v in zip(features, values, strict=True)]
    assert texts.sentences(features, values) == expected
    assert texts.sentences(features[::-1], values[::-1]) == expected[::-1]  # again, from the kept sentences
    assert len(set(expected)) > 300  # many distinct sentences, so a mix-up would show


def test_a_bundle_without_typical_values_loads_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    # A bundle made before reasons.json: it loads, and its reasons have typical_value null.
    shutil.copytree(committed().path, tmp_path / "old")
    (tmp_path / "old" / bundle.REASONS).unlink()
    manifest = json.loads((tmp_path / "old" / bundle.MANIFEST).read_text())
    del manifest["files"][bundle.REASONS]
    (tmp_path / "old" / bundle.MANIFEST).write_bytes(bundle.json_bytes(manifest))
    assert committed().typical is not None and bundle.load_bundle(tmp_path, "old").typical is None
    shutil.copytree(committed().path, tmp_path / "v")
    stored = typical_of_a_population().to_json()
    del stored["typical_values"]["tenure_days"]
    data = bundle.json_bytes(stored)
    (tmp_path / "v" / bundle.REASONS).write_bytes(data)
    manifest = json.loads((tmp_path / "v" / bundle.MANIFEST).read_text())
    manifest["files"][bundle.REASONS] = bundle.sha256(data)
    (tmp_path / "v" / bundle.MANIFEST).write_bytes(bundle.json_bytes(manifest))
    with pytest.raises(bundle.BundleError, match="typical values"):
        bundle.load_bundle(tmp_path, "v")
