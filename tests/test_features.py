"""Hand-computed cases of the feature specification (computed through the offline path)."""

import pytest

from app.features import spec
from tests.helpers import T_S, before, event, feature_row


def test_a_user_without_events_gets_every_documented_default() -> None:
    row = feature_row([], "nobody")
    assert row == {f.name: f.default for f in spec.FEATURES}
    assert row["days_since_last_purchase"] == spec.RECENCY_CAP_DAYS


@pytest.mark.parametrize("days", spec.WINDOWS_DAYS)
def test_window_edges_are_exclusive_at_the_start_and_inclusive_at_the_end(days: int) -> None:
    rows = [
        event("u", "page_view", before(days=days), "on-edge"),  # exactly w days before T: outside
        event("u", "page_view", before(days=days, seconds=-1), "inside"),  # one second later: inside
        event("u", "page_view", before(), "at-T"),  # at T: inside
        event("u", "page_view", before(seconds=-1), "after-T"),  # after T: ignored everywhere
    ]
    row = feature_row(rows, "u")
    assert row[f"page_view_count_{days}d"] == 2
    longer = [w for w in spec.WINDOWS_DAYS if w > days]
    assert all(row[f"page_view_count_{w}d"] == 3 for w in longer)
    assert row["tenure_days"] == days
    assert row["days_since_last_event"] == 0


def test_sub_second_times_are_truncated_before_windows_apply() -> None:
    rows = [event("u", "page_view", before(days=7, seconds=-0.9), "e")]  # T-7d+0.9s truncates to T-7d
    assert feature_row(rows, "u")["page_view_count_7d"] == 0


def test_purchases_amounts_recency_and_gaps() -> None:
    rows = [
        event("u", "purchase", before(days=100), "p1", amount=10.0),
        event("u", "purchase", before(days=40), "p2", amount=20.25),
        event(
            "u", "purchase", before(days=10), "p3", amount=5.005
        ),  # 5.005 * 100 is 500.4999... in binary: 500 cents
        event("u", "refund", before(days=5), "r1", amount=20.25),
    ]
    row = feature_row(rows, "u")
    assert row["purchase_count_30d"] == 1 and row["purchase_count_90d"] == 2
    assert row["purchase_amount_30d"] == 5.0
    assert row["purchase_amount_90d"] == 25.25
    assert row["refund_amount_30d"] == 20.25 and row["refund_count_7d"] == 1
    assert row["lifetime_purchases"] == 3 and row["lifetime_spend"] == 35.25
    assert row["days_since_last_purchase"] == 10
    assert row["purchase_gap_mean_days"] == 45  # gaps 60 and 30
    assert row["purchase_gap_std_days"] == 15


def test_only_refunds_leaves_purchase_features_at_their_defaults() -> None:
    row = feature_row([event("u", "refund", before(days=3), "r", amount=7.5)], "u")
    assert row["refund_count_7d"] == 1 and row["refund_amount_30d"] == 7.5
    assert row["lifetime_purchases"] == 0 and row["purchase_gap_mean_days"] == 0
    assert row["days_since_last_purchase"] == spec.RECENCY_CAP_DAYS
    assert row["days_since_last_event"] == 3 and row["tenure_days"] == 3


def test_duplicate_event_ids_count_once() -> None:
    twice = event("u", "purchase", before(days=1), "same", amount=4.0)
    row = feature_row([twice, twice, event("u", "purchase", before(days=2), "other", amount=1.0)], "u")
    assert row["lifetime_purchases"] == 2 and row["lifetime_spend"] == 5.0


def test_cart_conversion_and_reviews() -> None:
    rows = [
        *[event("u", "add_to_cart", before(days=d), f"c{d}") for d in (1, 2, 3, 4)],
        event("u", "purchase", before(days=2), "p", amount=3.0),
        event("u", "review", before(days=10), "r1", rating=1),
        event("u", "review", before(days=20), "r2", rating=2),
        event("u", "review", before(days=30), "r3", rating=5),
        event("u", "review", before(days=95), "r-old", rating=1),  # outside 90 days
    ]
    row = feature_row(rows, "u")
    assert row["cart_conversion_30d"] == 0.25
    assert row["review_rating_mean_90d"] == pytest.approx(8 / 3)
    assert row["low_rating_count_90d"] == 2


def test_recency_is_capped() -> None:
    row = feature_row([event("u", "purchase", before(days=1000), "p", amount=1.0)], "u")
    assert row["days_since_last_purchase"] == spec.RECENCY_CAP_DAYS
    assert row["tenure_days"] == 1000


def test_events_after_as_of_are_invisible() -> None:
    rows = [event("u", "purchase", before(days=-1), "future", amount=1.0)]
    assert feature_row(rows, "u") == feature_row([], "u")
    assert feature_row(rows, "u", as_of=T_S + 2 * spec.DAY_SECONDS)["lifetime_purchases"] == 1


def test_specification_hash_is_stable_and_names_are_unique() -> None:
    assert len(set(spec.FEATURE_NAMES)) == spec.N_FEATURES
    assert spec.spec_hash() == spec.spec_hash() and len(spec.spec_hash()) == 64
