"""Hand-computed cases of the feature specification (computed through the offline path)."""

from datetime import UTC, datetime, timedelta

import numpy as np
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


def test_purchase_regularity_decayed_spend_and_trends() -> None:
    rows = [
        event("u", "purchase", before(days=100), "p1", amount=10.0),  # period 3 (the first event's)
        event("u", "purchase", before(days=40), "p2", amount=20.0),  # period 1
        event("u", "purchase", before(days=10), "p3", amount=5.0),  # period 0, day 10
        event("u", "purchase", before(days=10, seconds=-60), "p3-same-day", amount=1.0),  # day 9
        event("u", "refund", before(days=5), "r1", amount=20.0),
    ]
    row = feature_row(rows, "u")
    assert row["purchase_period_share_12"] == 3 / 4  # periods 0..3, purchases in 0, 1 and 3
    assert row["purchase_days_lifetime"] == 4  # days 100, 40, 10 and 9
    # gaps 60, 30 and 60 s: mean 30.0002 days; 10 - 60 s since the last purchase
    gap_mean = (100 * 86_400 - (10 * 86_400 - 60)) / 3 / 86_400
    assert row["purchase_overdue_ratio"] == pytest.approx((10 - 60 / 86_400) / gap_mean)
    decayed = (
        10 * 2 ** (-100 / 30) + 20 * 2 ** (-40 / 30) + 5 * 2 ** (-10 / 30) + 2 ** (-(10 - 60 / 86_400) / 30)
    )
    assert row["spend_decayed_30d_half_life"] == pytest.approx(decayed, rel=1e-12)
    # 30-day window: 3 events, 6.0 spent; T-90d..T-30d: 1 event (20.0), i.e. 0.5 and 10.0 per 30 days
    assert row["trend_activity_30d_vs_90d"] == pytest.approx((3 - 0.5) / (3 + 0.5 + 1))
    assert row["trend_spend_30d_vs_90d"] == pytest.approx((6 - 10) / (6 + 10 + 1))


def test_regularity_looks_back_twelve_periods_at_most_and_period_edges_are_exclusive() -> None:
    rows = [event("u", "page_view", before(days=500), "first")]
    rows += [event("u", "purchase", before(days=30 * k), f"p{k}", amount=1.0) for k in (1, 2)]  # periods 1, 2
    rows.append(event("u", "purchase", before(days=400), "old", amount=1.0))  # period 13: beyond 12
    row = feature_row(rows, "u")
    assert row["purchase_period_share_12"] == 2 / 12
    short = feature_row([event("v", "purchase", before(days=30), "p", amount=1.0)], "v")
    assert short["purchase_period_share_12"] == 1 / 2  # periods 0 and 1, a purchase in period 1


def test_overdue_ratio_needs_two_purchases_and_is_capped() -> None:
    one = feature_row([event("u", "purchase", before(days=3), "p", amount=1.0)], "u")
    assert one["purchase_overdue_ratio"] == spec.OVERDUE_CAP
    assert one["purchase_days_lifetime"] == 1 and one["trend_activity_30d_vs_90d"] == 0.5
    # two purchases a second apart: the gap counts as a day, and 200 days since is far past 10 such gaps
    rows = [event("u", "purchase", before(days=200, seconds=s), f"p{s}", amount=1.0) for s in (0, 1)]
    assert feature_row(rows, "u")["purchase_overdue_ratio"] == spec.OVERDUE_CAP
    rows = [event("u", "purchase", before(days=d), f"p{d}", amount=1.0) for d in (4, 24)]
    assert feature_row(rows, "u")["purchase_overdue_ratio"] == 4 / 20


def test_trends_sit_at_0_without_events_in_90_days_and_are_bounded() -> None:
    assert (
        feature_row([event("w", "page_view", before(days=200), "v")], "w")["trend_activity_30d_vs_90d"] == 0
    )
    row = feature_row(
        [event("u", "purchase", before(days=60, seconds=s), f"p{s}", amount=500.0) for s in range(3)], "u"
    )
    assert row["trend_activity_30d_vs_90d"] == (0 - 1.5) / (0 + 1.5 + 1)
    assert row["trend_spend_30d_vs_90d"] == (0 - 750) / (0 + 750 + 1)


def test_unix_seconds_floors_exactly_up_to_2106() -> None:
    rng = np.random.default_rng(11)
    seconds = [*rng.integers(0, 2**32 - 1, 20_000).tolist(), 0, 2**32 - 2, 1_700_000_000]
    micros = [999_999, 0, 1, 500_000, *rng.integers(0, 1_000_000, len(seconds) - 4).tolist()]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for second, micro in zip(seconds, micros, strict=True):
        moment = epoch + timedelta(seconds=second, microseconds=micro)
        assert spec.unix_seconds(moment) == (moment - epoch) // timedelta(seconds=1) == second
    with pytest.raises(ValueError, match="naive"):
        spec.unix_seconds(datetime(2026, 1, 1))
