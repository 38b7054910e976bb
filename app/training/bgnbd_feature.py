"""A probability-model candidate feature: BG/NBD's probability that a user makes no purchase in the horizon.

BG/NBD (Fader, Hardie and Lee, 2005) describes a buyer by purchases at a Poisson rate (gamma-distributed
over buyers, parameters r and alpha) until they drop out, with a chance p after each purchase
(beta-distributed, a and b). Its four parameters are fitted on the training rows (the latest snapshot:
one row per user) with `lifetimes`; the feature itself is in closed form, computed from the served
features of each row, so the same function would serve it:

- x: repeat purchase days (`purchase_days_lifetime` - 1); t_x: days from the first purchase to the last,
  `purchase_gap_mean_days` x (`lifetime_purchases` - 1), or 0 when x = 0 (purchases on one day only);
  T: days since the first purchase, t_x + `days_since_last_purchase` (counted from the last purchase of
  that day when x = 0). A user who never bought has x = 0 and T = `tenure_days`.
- P(alive) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x)); a user alive at T has
  rate posterior gamma(r + x, alpha + T) and cannot drop out without buying, so
  P(no purchase in h days) = 1 - P(alive) + P(alive) ((alpha + T) / (alpha + T + h))^(r + x).
  (The expected number of purchases needs a hypergeometric function; its "none" needs only these powers.)

On some logs the fit lands on a boundary: a dropout chance near 0 (every user "alive", the feature a
function of the purchase rate alone) or parameters running off to infinity. Then the feature is dropped
with the reason rather than shipped as a constant.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from app.features import spec

Matrix = npt.NDArray[np.float64]
Vector = npt.NDArray[np.float64]

NAME: Final = "bgnbd_p_no_purchase_horizon"
FEATURE: Final = spec.Feature(
    NAME, "BG/NBD probability of no purchase in the horizon, from the purchase features", 1.0, False
)
MIN_DROPOUT: Final = 1e-3  # mean dropout chance a / (a + b) below this: everyone is "alive"
MAX_PARAMETER: Final = 1e6  # a parameter beyond this ran off to a boundary of the likelihood
_I = spec.FEATURE_INDEX


class BoundaryFit(ValueError):
    """The fit is degenerate; the message says how."""


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    @property
    def mean_dropout(self) -> float:
        return self.a / (self.a + self.b)

    def p_alive(self, x: Vector, t_x: Vector, T: Vector) -> Vector:
        """P(still a buyer at T | x repeat purchases, the last at t_x), without overflow."""
        log_odds_dead = (
            np.log(self.a)
            - np.log(np.maximum(self.b + x - 1.0, 1e-12))
            + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        )
        alive: Vector = np.where(x > 0, np.exp(-np.logaddexp(0.0, log_odds_dead)), 1.0)
        return alive

    def p_none(self, x: Vector, t_x: Vector, T: Vector, horizon_days: float) -> Vector:
        """P(no purchase in (T, T + horizon_days] | x, t_x, T)."""
        alive = self.p_alive(x, t_x, T)
        quiet_if_alive = np.exp(
            (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + horizon_days))
        )
        none: Vector = 1.0 - alive + alive * quiet_if_alive
        return none

    def p_no_purchase(self, raw: Matrix, horizon_days: float) -> Vector:
        """The feature, for rows of the specification's raw features."""
        return self.p_none(*rfm_from_features(raw), horizon_days)


def rfm_from_features(raw: Matrix) -> tuple[Vector, Vector, Vector]:
    """(x, t_x, T) in days per row, from the served features (see the module's docstring)."""
    purchases = raw[:, _I["lifetime_purchases"]]
    bought = purchases > 0
    x = np.maximum(raw[:, _I["purchase_days_lifetime"]] - 1.0, 0.0)
    # Purchases on one day only are no repeat purchase (x = 0), and BG/NBD then has t_x = 0.
    t_x = np.where(x > 0, raw[:, _I["purchase_gap_mean_days"]] * np.maximum(purchases - 1.0, 0.0), 0.0)
    T = np.where(bought, t_x + raw[:, _I["days_since_last_purchase"]], raw[:, _I["tenure_days"]])
    return x, t_x, np.maximum(T, t_x)


def fit(raw: Matrix) -> BgNbd:
    """Maximum likelihood on these rows (one per user); BoundaryFit when degenerate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifetimes imports pkg_resources, which warns on import
        from lifetimes import BetaGeoFitter

    x, t_x, T = rfm_from_features(raw)
    usable = T > 0
    if usable.sum() < 10 or not (x[usable] > 0).any():
        raise BoundaryFit("fewer than 10 users with history, or no repeat buyer: nothing to fit")
    model = BetaGeoFitter(penalizer_coef=0.001)
    model.fit(x[usable], t_x[usable], T[usable])
    params = {name: float(model.params_[name]) for name in ("r", "alpha", "a", "b")}
    fitted = BgNbd(**params)
    if not all(np.isfinite(v) and 0 < v < MAX_PARAMETER for v in params.values()):
        raise BoundaryFit(f"a parameter on a boundary: {_show(params)}")
    if fitted.mean_dropout < MIN_DROPOUT:
        raise BoundaryFit(
            f"dropout chance {fitted.mean_dropout:.2g} < {MIN_DROPOUT:g}, every user alive: {_show(params)}"
        )
    return fitted


def _show(params: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in params.items())
