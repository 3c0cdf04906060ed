"""Power of the experiment's test of the relative lift: the sample a given effect needs, and the
effect a given sample can find.

Owns the sample-size formula for :func:`~clickhouse.experiments.stats.compare`'s fixed-horizon
test, two-sided, control against each variant. Invariant: :func:`reachable_mde` inverts
:func:`required_units`, both from the same delta-method variance of the lift under the effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def required_units(
    per_unit_variance: float, mean: float, mde: float, alpha: float, power: float, weights: Sequence[float]
) -> int | None:
    """Units of all arms together for a two-sided test at ``alpha`` to find a relative lift of
    ``mde`` with probability ``power`` between the control (``weights[0]``) and every variant.

    Under the effect the variant's mean is ``mean (1 + mde)`` and each arm's per-unit variance is
    ``per_unit_variance``, so the lift's variance with n_c and n_v units is
    ``variance / mean**2 (1 / n_v + (1 + mde)**2 / n_c)`` (:func:`~clickhouse.experiments.stats.relative_variance`);
    the sample is the smallest that brings ``mde / se`` to ``z(1 - alpha / 2) + z(power)``.
    ``None`` when the metric has no variance or a zero mean, or an arm no weight.
    """
    shares = _shares(weights)
    if shares is None or not _usable(per_unit_variance, mean) or not mde:
        return None
    z = _z_sum(alpha, power)
    effect = abs(mde)
    control = shares[0]
    needed = max(
        z**2 * per_unit_variance * (1 / variant + (1 + effect) ** 2 / control) / (mean * effect) ** 2
        for variant in shares[1:]
    )
    return math.ceil(needed)


def reachable_mde(
    per_unit_variance: float, mean: float, units: int, alpha: float, power: float, weights: Sequence[float]
) -> float | None:
    """The smallest relative lift that ``units`` (all arms) find with probability ``power``: the
    ``mde`` at which :func:`required_units` equals ``units``. ``None`` when no effect is reachable."""
    shares = _shares(weights)
    if shares is None or not _usable(per_unit_variance, mean) or units < 2:
        return None
    z = _z_sum(alpha, power)
    scale = mean**2 * units / (z**2 * per_unit_variance)
    inverse_control = 1 / shares[0]
    reachable = []
    for variant in shares[1:]:
        # scale m**2 = 1 / w_v + (1 + m)**2 / w_c, a quadratic in m with one positive root.
        a = scale - inverse_control
        if a <= 0:
            return None
        b = -2 * inverse_control
        c = -(1 / variant + inverse_control)
        reachable.append((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))
    return max(reachable)


def _shares(weights: Sequence[float]) -> list[float] | None:
    total = sum(weights)
    if len(weights) < 2 or total <= 0 or min(weights) <= 0:
        return None
    return [w / total for w in weights]


def _usable(variance: float, mean: float) -> bool:
    return math.isfinite(variance) and variance > 0 and math.isfinite(mean) and mean != 0


def _z_sum(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
