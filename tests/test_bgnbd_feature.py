"""The BG/NBD candidate feature: its closed form against lifetimes, its inputs from the served features,
and the boundary fits it refuses."""

import warnings

import numpy as np
import pytest

from app.features import offline, spec
from app.training import bgnbd_feature
from app.training.simulate import SimulationConfig, simulate

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # lifetimes imports pkg_resources, which warns on import
    from lifetimes import BetaGeoFitter

COLUMN = spec.FEATURE_INDEX


def _lifetimes_model(model: bgnbd_feature.BgNbd) -> BetaGeoFitter:
    fitter = BetaGeoFitter()
    fitter.params_ = {"r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b}
    return fitter


def test_the_closed_form_agrees_with_lifetimes() -> None:
    model = bgnbd_feature.BgNbd(r=0.24, alpha=4.4, a=0.79, b=2.4)  # the CDNOW fit of Fader et al.
    rng = np.random.default_rng(1)
    T = rng.uniform(1, 400, 500)
    t_x = T * rng.uniform(0, 1, 500)
    x = rng.integers(0, 30, 500).astype(float)
    t_x[x == 0] = 0.0
    expected_alive = _lifetimes_model(model).conditional_probability_alive(x, t_x, T)
    np.testing.assert_allclose(model.p_alive(x, t_x, T), expected_alive, rtol=1e-9)
    # A new buyer (x = 0, T = 0): P(no purchase in t) is BG/NBD's unconditional P(X(t) = 0).
    for t in (7.0, 90.0, 365.0):
        unconditional = _lifetimes_model(model).probability_of_n_purchases_up_to_time(t, 0)
        assert model.p_none(np.zeros(1), np.zeros(1), np.zeros(1), t)[0] == pytest.approx(unconditional)
    # Markov: P(at least one purchase) <= the expected number of purchases.
    h = 90.0
    expected_purchases = _lifetimes_model(model).conditional_expected_number_of_purchases_up_to_time(
        h, x, t_x, T
    )
    assert (1.0 - model.p_none(x, t_x, T, h) <= np.asarray(expected_purchases) + 1e-9).all()
    # Extremes stay finite: a buyer of 5,000 days long gone.
    far = model.p_none(np.array([5000.0]), np.array([1.0]), np.array([3000.0]), h)
    assert np.isfinite(far).all() and 0.0 <= far[0] <= 1.0


def test_its_inputs_come_from_the_served_features() -> None:
    events = offline.validate_events(simulate(SimulationConfig(n_users=200, days=150, seed=5)).events)
    as_of = int(events["ts_s"].max()) - 30 * spec.DAY_SECONDS
    users, raw = offline.features(events, as_of)
    x, t_x, T = bgnbd_feature.rfm_from_features(raw)
    bought = events[(events["kind"] == spec.PURCHASE) & (events["ts_s"] <= as_of)]
    first = bought.groupby("user_id")["ts_s"].min().reindex(users)
    last = bought.groupby("user_id")["ts_s"].max().reindex(users)
    buyers = first.notna().to_numpy()
    assert buyers.any() and (~buyers).any()
    repeat = buyers & (x > 0)
    assert repeat.any() and (buyers & (x == 0)).any()
    span = ((last - first) / spec.DAY_SECONDS).to_numpy()
    np.testing.assert_allclose(t_x[repeat], span[repeat], atol=1e-9)
    assert (t_x[x == 0] == 0).all()  # BG/NBD's convention: no repeat purchase, no recency
    since_first = ((as_of - first) / spec.DAY_SECONDS).to_numpy()
    np.testing.assert_allclose(T[repeat], since_first[repeat], atol=1e-9)
    # Several purchases on one day count from the last of them: T is short by less than that day.
    one_day = buyers & (x == 0)
    assert (since_first[one_day] - T[one_day] >= -1e-9).all() and (
        since_first[one_day] - T[one_day] < 1
    ).all()
    assert (T[~buyers] == raw[~buyers, COLUMN["tenure_days"]]).all() and (x[~buyers] == 0).all()
    assert (x == np.maximum(raw[:, COLUMN["purchase_days_lifetime"]] - 1, 0)).all()


def test_a_fit_where_nobody_drops_out_is_refused() -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    raw = np.zeros((n, len(spec.FEATURES)))
    purchases = rng.integers(3, 20, n)
    gap = rng.uniform(5, 15, n)
    raw[:, COLUMN["lifetime_purchases"]] = raw[:, COLUMN["purchase_days_lifetime"]] = purchases
    raw[:, COLUMN["purchase_gap_mean_days"]] = gap
    raw[:, COLUMN["days_since_last_purchase"]] = rng.uniform(0, 1, n) * gap  # every buyer on schedule
    with pytest.raises(bgnbd_feature.BoundaryFit, match="every user alive"):
        bgnbd_feature.fit(raw)
    with pytest.raises(bgnbd_feature.BoundaryFit, match="no repeat buyer"):
        bgnbd_feature.fit(np.zeros((50, len(spec.FEATURES))))
