"""Statistics over independent replicates: means with t confidence intervals, paired
differences, and the verdict on a claim from the interval of its effect.

A *replicate* is one complete, independently seeded run of an experiment (phantoms, noise,
network initialisation and batch order all reseeded). Differences between two methods are
*paired* within a replicate (same data, same pre-trained net), so the interval of a
comparison is the interval of the mean of the per-replicate differences.

Verdicts (``verdict``) read a claim as a statement about the effect's true value:

- ``"greater"``: the effect exceeds ``bound`` (e.g. TGD's bias closer to zero than FT's by
  more than 0 points);
- ``"less"``: the effect is below ``bound``;
- ``"within"``: ``|effect| <= bound`` (an equivalence claim, e.g. "CoV close to v1-net's").

The verdict is ``"holds"`` when the whole interval satisfies the claim, ``"does not hold"``
when the whole interval contradicts it, and ``"inconclusive"`` when the interval straddles the
boundary (or there are too few replicates for an interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

VERDICTS = ("holds", "does not hold", "inconclusive")
CLAIMS = ("greater", "less", "within")


def _values(x: Sequence[float], what: str = "values") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: NaN or infinite values {a.tolist()}")
    return a


def mean_ci(x: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``x`` and its two-sided Student-t interval at
    ``level``; with a single value the interval is ``(nan, nan)``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    a = _values(x)
    m = float(a.mean())
    if a.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return m, m - half, m + half


def paired_ci(a: Sequence[float], b: Sequence[float],
              level: float = 0.95) -> tuple[float, float, float]:
    """:func:`mean_ci` of the per-replicate differences ``a - b`` (same replicates, same
    order)."""
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired values differ in count: {x.size} vs {y.size}")
    return mean_ci(x - y, level)


def verdict(lo: float, hi: float, claim: str, bound: float = 0.0) -> str:
    """The verdict on ``claim`` (see the module docstring) from the interval ``[lo, hi]``."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, got {claim!r}")
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"interval bounds out of order: [{lo}, {hi}]")
    if claim == "greater":
        return "holds" if lo > bound else "does not hold" if hi < bound else "inconclusive"
    if claim == "less":
        return "holds" if hi < bound else "does not hold" if lo > bound else "inconclusive"
    if bound < 0:
        raise ValueError(f"a 'within' claim needs a non-negative bound, got {bound}")
    if -bound <= lo and hi <= bound:
        return "holds"
    return "does not hold" if lo > bound or hi < -bound else "inconclusive"
