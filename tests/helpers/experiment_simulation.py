"""Seeded generator of two-arm experiments at the array level: per-unit post and pre-period values
of a proportion, a mean or a ratio metric, with a chosen pre/post correlation and a planted
relative effect on the variant's post period. Invariant: the control's post period has the
baseline's expectation and the variant's exactly ``1 + effect`` times it; the pre period never
sees the effect.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from clickhouse.experiments.regression import UnitValues

Kind = Literal["proportion", "mean", "ratio"]

BASELINE: dict[Kind, float] = {"proportion": 0.3, "mean": 10.0, "ratio": 60.0}
"""Conversion rate; value per unit; seconds per image."""
MEAN_SD = 3.0
RATE_LOG_SD = 0.25
"""Spread of a unit's own rate (log scale): small enough that the rates' correlation stays near rho."""
IMAGES_PER_UNIT = 2.0
"""Poisson mean of a unit's images beyond the first."""


def arms(
    rng: np.random.Generator, kind: Kind, units_per_arm: int, rho: float, effect: float = 0.0
) -> tuple[UnitValues, UnitValues]:
    """One experiment: the control, then the variant with its post period moved by ``effect``. Every
    draw comes from ``rng``, so one seeded generator replays the same run of experiments."""
    return _arm(rng, kind, units_per_arm, rho, 0.0), _arm(rng, kind, units_per_arm, rho, effect)


def _arm(rng: np.random.Generator, kind: Kind, n: int, rho: float, effect: float) -> UnitValues:
    base = BASELINE[kind]
    ones = np.ones(n)
    if kind == "proportion":
        pre = (rng.random(n) < base).astype(float)
        # P(post | pre) chosen so that post keeps the baseline rate and corr(pre, post) = rho exactly.
        rate = np.where(pre == 1, base + rho * (1 - base), base * (1 - rho)) * (1 + effect)
        post = (rng.random(n) < np.minimum(rate, 1.0)).astype(float)
        return UnitValues(post, ones, pre, ones)
    z_pre, z_post = _correlated_normals(rng, n, rho)
    if kind == "mean":
        return UnitValues(base * (1 + effect) + MEAN_SD * z_post, ones, base + MEAN_SD * z_pre, ones)
    # Ratio: a unit keeps its activity (images) and its own speed across periods; the speeds of the two
    # periods are lognormal with latent correlation rho (their own correlation is within 0.01 of it).
    images = 1 + rng.poisson(IMAGES_PER_UNIT, n).astype(float)
    spread = RATE_LOG_SD
    rate_pre = base * np.exp(spread * z_pre - spread**2 / 2)
    rate_post = base * (1 + effect) * np.exp(spread * z_post - spread**2 / 2)
    return UnitValues(images * rate_post, images, images * rate_pre, images)


def _correlated_normals(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    first = rng.standard_normal(n)
    return first, rho * first + np.sqrt(1 - rho**2) * rng.standard_normal(n)
