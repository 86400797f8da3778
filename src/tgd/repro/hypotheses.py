"""Tests of pre-registered endpoints on signed paired differences, one per replicate.

Each endpoint of the reproduction is a claim about the true mean of ``d``, the per-replicate
paired difference between two methods (same data, same pre-trained net; see
:mod:`tgd.repro.statistics` for what a replicate is). ``d`` is *signed*: its sign
convention is part of the pre-registration, and ``direction`` names the good side.

Which test for which claim
--------------------------
- "A is **better** than B" -> :func:`superiority`: one-sided paired t test of
  H0: mean <= 0 (``direction="greater"``) or H0: mean >= 0 (``direction="less"``).
- "A **keeps** / is **no worse** than B" -> :func:`non_inferiority` with a pre-registered
  ``margin > 0``: one-sided paired t test of H0: the effect is worse than ``-margin`` on the
  good side (mean <= -margin for ``"greater"``, mean >= +margin for ``"less"``).
- "A is **on par** with B" -> :func:`equivalence` (TOST) with a margin ``m`` (the interval
  ``(-m, m)``) or ``(low, high)`` with ``low < 0 < high``.
- The **primary family** of endpoints is corrected together with :func:`holm` (Holm-Bonferroni
  step-down, strong family-wise error control at ``alpha``); secondary endpoints are reported
  unadjusted.

Verdict rules (``Decision.verdict`` is one of :data:`tgd.repro.statistics.VERDICTS`)
-----------------------------------------------------------------------------------------
All intervals are Student-t intervals of the mean of ``d`` with ``n - 1`` degrees of freedom.
``ci_two_sided`` is the two-sided ``1 - 2 alpha`` interval; its end on the good side is the
one-sided ``1 - alpha`` confidence bound of the test, so "p < alpha" and "the bound clears
the null value" are the same event.

- superiority: ``"holds"`` if p < alpha; ``"does not hold"`` if ``ci_two_sided`` lies entirely
  on the wrong side of 0 (the effect is significantly in the opposite direction, i.e. the
  mirrored one-sided test rejects at alpha); else ``"inconclusive"``.
- non-inferiority: ``"holds"`` if the one-sided bound clears the margin (p < alpha);
  ``"does not hold"`` if ``ci_two_sided`` lies entirely beyond the margin on the bad side
  (the effect is significantly worse than the margin); else ``"inconclusive"``.
- equivalence (TOST): ``"holds"`` if both one-sided tests reject at alpha, i.e. the
  ``1 - 2 alpha`` interval lies inside ``(low, high)``; p is the larger of the two p-values;
  ``"does not hold"`` if that interval lies entirely outside the margins (wholly above
  ``high`` or wholly below ``low``); else ``"inconclusive"``.
- Holm: a ``"holds"`` whose Holm-adjusted p is not below the family alpha becomes
  ``"inconclusive"``; a ``"does not hold"`` decided by the endpoint's own interval
  (``decided_by == "interval"``) is kept, because the correction guards against false
  "holds" and an interval wholly on the bad side is evidence against the claim at the
  endpoint's own level; any other ``"does not hold"`` becomes ``"inconclusive"``. Intervals
  are not adjusted (Holm has no matching simultaneous intervals); ``p_value`` stays the raw
  p and ``p_adjusted`` carries the adjusted one.

Zero variance (every value of ``d`` equal to ``c``): the intervals collapse to ``[c, c]``
and a one-sided p is 0 when ``c`` lies strictly on the alternative's side of the null value
and 1 otherwise (ties go to the null). The verdict rules then apply unchanged; nothing is
NaN and nothing raises.

Input validation raises ``ValueError`` naming the argument: NaN or infinite values, fewer
than 2 values, a non-positive margin, an unknown direction or kind, alpha outside (0, 0.5).

Also here: :func:`hodges_lehmann` (robust location with the exact Wilcoxon interval),
:func:`nested_effect` (several adaptation seeds per base-net replicate),
:func:`replicates_for_power` / :func:`paired_t_power` (planning),
:func:`seeds_agree` (do two base seeds agree), :func:`divergence_rate` and
:func:`is_diverged` (runs that blew up).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import integrate, stats

from tgd.repro.statistics import VERDICTS, mean_ci

DIRECTIONS = ("greater", "less")
POWER_KINDS = ("superiority", "non_inferiority", "equivalence")
EXACT_WILCOXON_MAX_N = 50  # exact signed-rank distribution up to here, normal beyond

Interval = tuple[float, float]


# ----------------------------------------------------------------------------- validation


def _sample(x: Sequence[float], name: str, min_n: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim > 1:
        raise ValueError(f"{name}: expected a 1-D sequence of values, got shape {a.shape}")
    a = a.reshape(-1)
    if a.size < min_n:
        raise ValueError(f"{name}: need at least {min_n} values, got {a.size}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: NaN or infinite values {a.tolist()}")
    return a


def _alpha(alpha: float, name: str = "alpha", upper: float = 0.5) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < upper:
        raise ValueError(f"{name} must lie in (0, {upper}), got {alpha}")
    return alpha


def _level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return level


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _margins(margin: float | Sequence[float]) -> Interval:
    """``(low, high)`` from a symmetric margin ``m`` (``(-m, m)``) or a pair with
    ``low < 0 < high``."""
    if np.ndim(margin) == 0:
        m = _positive(margin, "margin")  # type: ignore[arg-type]
        return -m, m
    pair = [float(v) for v in margin]  # type: ignore[union-attr]
    if len(pair) != 2 or not all(math.isfinite(v) for v in pair):
        raise ValueError(f"margin must be a positive number or a finite (low, high), got {margin}")
    low, high = pair
    if not low < 0.0 < high:
        raise ValueError(f"margin (low, high) must satisfy low < 0 < high, got {margin}")
    return low, high


# ----------------------------------------------------------------------------- t machinery


@dataclass(frozen=True)
class _Summary:
    n: int
    mean: float
    sd: float

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)


def _summarise(a: np.ndarray) -> _Summary:
    if np.all(a == a[0]):  # exactly constant: no floating residue in mean or sd
        return _Summary(a.size, float(a[0]), 0.0)
    return _Summary(a.size, float(a.mean()), float(a.std(ddof=1)))


def _ci(a: np.ndarray, s: _Summary, level: float) -> Interval:
    if s.sd == 0.0:
        return s.mean, s.mean
    _, lo, hi = mean_ci(a, level)
    return lo, hi


def _p_one_sided(s: _Summary, null: float, alternative: str) -> float:
    """p of the one-sided t test of H0: mean <= null (``"greater"``) or >= null
    (``"less"``); with zero variance 0 or 1 by the side the constant lies on."""
    if s.sd == 0.0:
        hit = s.mean > null if alternative == "greater" else s.mean < null
        return 0.0 if hit else 1.0
    t = (s.mean - null) / s.se
    df = s.n - 1
    return float(stats.t.sf(t, df) if alternative == "greater" else stats.t.cdf(t, df))


# ----------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """The outcome of one endpoint's test (see the module docstring for the rules).

    ``ci`` is the interval that matches the test: for the one-sided tests the half-line of
    the one-sided ``1 - alpha`` bound (``(bound, inf)`` for ``"greater"``, ``(-inf, bound)``
    for ``"less"``), for TOST the two-sided ``1 - 2 alpha`` interval. ``ci_two_sided`` is
    always the ``1 - 2 alpha`` interval (the one the "does not hold" rules read) and ``ci95``
    the two-sided 95 % interval for display. ``margin`` is 0 for superiority, the positive
    margin for non-inferiority and ``(low, high)`` for equivalence; ``direction`` is the good
    side, ``"within"`` for equivalence. ``decided_by`` says what decided the verdict:
    ``"p-value"`` (holds), ``"interval"`` (does not hold) or ``"neither"`` (inconclusive).
    ``p_adjusted`` is set by :func:`holm` only.
    """

    test: str
    estimate: float
    ci: Interval
    ci95: Interval
    ci_two_sided: Interval
    p_value: float
    margin: float | Interval
    direction: str
    alpha: float
    n: int
    sd: float
    verdict: str
    decided_by: str
    p_adjusted: float | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.decided_by not in ("p-value", "interval", "neither"):
            raise ValueError(f"decided_by must be p-value, interval or neither, "
                             f"got {self.decided_by!r}")

    @property
    def bound(self) -> float:
        """The one-sided ``1 - alpha`` confidence bound on the good side (the end of
        ``ci_two_sided`` toward ``direction``); for equivalence, NaN."""
        if self.direction == "greater":
            return self.ci_two_sided[0]
        if self.direction == "less":
            return self.ci_two_sided[1]
        return math.nan

    def describe(self) -> str:
        """One line for a report: estimate, intervals, p and verdict."""
        lvl = 1 - 2 * self.alpha
        p = f"p = {self.p_value:.3g}"
        if self.p_adjusted is not None:
            p += f" (Holm {self.p_adjusted:.3g})"
        if self.direction == "within":
            lo, hi = self.margin  # type: ignore[misc]
            what = f"within ({lo:g}, {hi:g})"
            ival = f"{lvl:.0%} CI [{self.ci[0]:.4g}, {self.ci[1]:.4g}]"
        else:
            what = self.direction + (f", margin {self.margin:g}" if self.margin else "")
            ival = f"one-sided {1 - self.alpha:.0%} bound {self.bound:.4g}"
        return (f"{self.test} ({what}): mean {self.estimate:.4g}, 95% CI "
                f"[{self.ci95[0]:.4g}, {self.ci95[1]:.4g}], {ival}, {p}, n = {self.n}: "
                f"{self.verdict}")


def _half_line(ci2: Interval, direction: str) -> Interval:
    return (ci2[0], math.inf) if direction == "greater" else (-math.inf, ci2[1])


def superiority(d: Sequence[float], direction: str = "greater",
                alpha: float = 0.05) -> Decision:
    """"Better": one-sided paired t test of H0: mean(d) <= 0 (``"greater"``) or >= 0
    (``"less"``). Holds if p < alpha; does not hold if the ``1 - 2 alpha`` interval lies
    wholly on the wrong side of 0; else inconclusive."""
    direction, alpha = _direction(direction), _alpha(alpha)
    a = _sample(d, "d")
    s = _summarise(a)
    ci2 = _ci(a, s, 1 - 2 * alpha)
    p = _p_one_sided(s, 0.0, direction)
    wrong_side = ci2[1] < 0.0 if direction == "greater" else ci2[0] > 0.0
    verdict, by = _rule(p < alpha, wrong_side)
    return Decision("superiority", s.mean, _half_line(ci2, direction), _ci(a, s, 0.95), ci2,
                    p, 0.0, direction, alpha, s.n, s.sd, verdict, by)


def non_inferiority(d: Sequence[float], margin: float, direction: str = "greater",
                    alpha: float = 0.05) -> Decision:
    """"Keeps / no worse": one-sided paired t test of H0: mean(d) <= -margin
    (``"greater"``: larger is better) or >= +margin (``"less"``). Holds if the one-sided
    ``1 - alpha`` bound clears the margin (p < alpha); does not hold if the ``1 - 2 alpha``
    interval lies wholly beyond the margin on the bad side; else inconclusive."""
    direction, alpha = _direction(direction), _alpha(alpha)
    margin = _positive(margin, "margin")
    a = _sample(d, "d")
    s = _summarise(a)
    ci2 = _ci(a, s, 1 - 2 * alpha)
    if direction == "greater":
        p, beyond = _p_one_sided(s, -margin, "greater"), ci2[1] < -margin
    else:
        p, beyond = _p_one_sided(s, margin, "less"), ci2[0] > margin
    verdict, by = _rule(p < alpha, beyond)
    return Decision("non-inferiority", s.mean, _half_line(ci2, direction), _ci(a, s, 0.95),
                    ci2, p, margin, direction, alpha, s.n, s.sd, verdict, by)


def equivalence(d: Sequence[float], margin: float | Sequence[float],
                alpha: float = 0.05) -> Decision:
    """"On par": TOST of H0: mean(d) <= low or mean(d) >= high, with ``margin`` a positive
    ``m`` (``(-m, m)``) or ``(low, high)``, ``low < 0 < high``. p is the larger of the two
    one-sided p-values. Holds if both reject (the ``1 - 2 alpha`` interval inside the
    margins); does not hold if that interval lies wholly outside them; else inconclusive."""
    alpha = _alpha(alpha)
    low, high = _margins(margin)
    a = _sample(d, "d")
    s = _summarise(a)
    ci2 = _ci(a, s, 1 - 2 * alpha)
    p = max(_p_one_sided(s, low, "greater"), _p_one_sided(s, high, "less"))
    outside = ci2[0] > high or ci2[1] < low
    verdict, by = _rule(p < alpha, outside)
    return Decision("equivalence", s.mean, ci2, _ci(a, s, 0.95), ci2, p, (low, high),
                    "within", alpha, s.n, s.sd, verdict, by)


def _rule(holds: bool, refuted: bool) -> tuple[str, str]:
    if holds:
        return "holds", "p-value"
    if refuted:
        return "does not hold", "interval"
    return "inconclusive", "neither"


# ----------------------------------------------------------------------------- Holm


@dataclass(frozen=True)
class HolmFamily:
    """Holm-Bonferroni over a family: raw and adjusted p-values in input order, which
    hypotheses are rejected at ``alpha`` (adjusted p < alpha) and, for :class:`Decision`
    inputs, the re-decided endpoints (empty for plain p-values)."""

    alpha: float
    p_values: tuple[float, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]
    decisions: tuple[Decision, ...] = ()


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in input order: sorted ascending,
    ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))`` (1-based ``j``), hence monotone
    in the raw p and capped at 1."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if p.size == 0:
        raise ValueError("p_values: no values")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(stepped)
    return out


def holm(decisions_or_pvalues: Sequence[Decision] | Sequence[float],
         alpha: float = 0.05) -> HolmFamily:
    """Holm-Bonferroni step-down over the primary family, at family-wise level ``alpha``.

    Plain p-values give the adjusted p-values and rejections. :class:`Decision` inputs
    (each must have been decided at the family's ``alpha``) also come back re-decided with
    the adjusted p: a "holds" that does not survive becomes "inconclusive"; a "does not
    hold" decided by its own interval stays; any other "does not hold" becomes
    "inconclusive" (see the module docstring)."""
    alpha = _alpha(alpha, upper=1.0)
    items = list(decisions_or_pvalues)
    if not items:
        raise ValueError("decisions_or_pvalues: an empty family")
    kinds = {isinstance(x, Decision) for x in items}
    if len(kinds) > 1:
        raise ValueError("decisions_or_pvalues: mix of Decisions and p-values")
    if kinds == {False}:
        raw = np.asarray(items, dtype=np.float64)
        adj = holm_adjust(raw)
        return HolmFamily(alpha, tuple(raw.tolist()), tuple(adj.tolist()),
                          tuple(bool(v) for v in adj < alpha))
    decs: list[Decision] = items  # type: ignore[assignment]
    for dec in decs:
        if not math.isclose(dec.alpha, alpha):
            raise ValueError(f"decisions_or_pvalues: a {dec.test} decided at alpha "
                             f"{dec.alpha} in a family at alpha {alpha}")
    raw = np.asarray([dec.p_value for dec in decs])
    adj = holm_adjust(raw)
    out = []
    for dec, pa in zip(decs, adj.tolist(), strict=True):
        if dec.verdict == "holds" and pa < alpha:
            verdict, by = "holds", "p-value"
        elif dec.verdict == "does not hold" and dec.decided_by == "interval":
            verdict, by = "does not hold", "interval"
        else:
            verdict, by = "inconclusive", "neither"
        out.append(replace(dec, verdict=verdict, decided_by=by, p_adjusted=pa))
    return HolmFamily(alpha, tuple(raw.tolist()), tuple(adj.tolist()),
                      tuple(bool(v) for v in adj < alpha), tuple(out))


# ----------------------------------------------------------------------------- Hodges-Lehmann


@dataclass(frozen=True)
class HodgesLehmann:
    """The one-sample Hodges-Lehmann estimate and its Wilcoxon signed-rank interval
    ``[W(k), W(M + 1 - k)]`` (1-based order statistics of the ``M = n (n + 1) / 2`` Walsh
    averages; ``ranks = (k, M + 1 - k)``). ``coverage`` is the achieved confidence,
    ``1 - 2 P(T+ <= k - 1)`` under the signed-rank null (exact or normal, per ``method``):
    at least ``level`` except when ``n`` is too small for any interval to reach it (then
    ``k = 1``, the interval is the range of the data and ``coverage < level``)."""

    estimate: float
    ci: Interval
    level: float
    coverage: float
    n: int
    method: str
    ranks: tuple[int, int]


def signed_rank_cdf(n: int) -> np.ndarray:
    """The exact null CDF of the Wilcoxon signed-rank statistic ``T+`` for ``n`` untied,
    non-zero values: ``P(T+ <= t)`` for ``t = 0 .. n (n + 1) / 2``, from the integer count of
    subsets of ``{1..n}`` with each sum (the distribution ``scipy.stats.wilcoxon`` uses with
    ``method="exact"``; exact in int64 up to ``n = 60``)."""
    n = int(n)
    if not 1 <= n <= 60:
        raise ValueError(f"n must lie in [1, 60] for the exact distribution, got {n}")
    m = n * (n + 1) // 2
    counts = np.zeros(m + 1, dtype=np.int64)
    counts[0] = 1
    for i in range(1, n + 1):
        counts[i:] = counts[i:] + counts[:-i].copy()
    return np.cumsum(counts) / float(2**n)


def hodges_lehmann(d: Sequence[float], level: float = 0.95) -> HodgesLehmann:
    """Median of the Walsh averages ``(d_i + d_j) / 2, i <= j``, with the signed-rank
    interval at ``level``. ``k`` is the largest integer with ``P(T+ <= k - 1) <= (1 -
    level) / 2``: exact for ``n <= 50`` (:func:`signed_rank_cdf`), normal approximation with
    continuity correction beyond (mean ``M / 2``, variance ``n (n + 1) (2n + 1) / 24``).
    The interval assumes a continuous symmetric distribution; with ties its coverage is
    approximate."""
    level = _level(level)
    a = _sample(d, "d")
    n = a.size
    i, j = np.triu_indices(n)
    walsh = np.sort((a[i] + a[j]) / 2.0)
    m = walsh.size
    tail = (1.0 - level) / 2.0
    if n <= EXACT_WILCOXON_MAX_N:
        cdf = signed_rank_cdf(n)
        ok = np.flatnonzero(cdf <= tail * (1 + 1e-12))  # t = k - 1 with P(T+ <= t) <= tail
        k = int(ok[-1]) + 1 if ok.size else 1
        coverage = 1.0 - 2.0 * float(cdf[k - 1])
        method = "exact"
    else:
        mu, sigma = m / 2.0, math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
        t = math.floor(mu - 0.5 + stats.norm.ppf(tail) * sigma)
        k = max(1, t + 1)
        coverage = 1.0 - 2.0 * float(stats.norm.cdf((k - 1 + 0.5 - mu) / sigma))
        method = "normal"
    return HodgesLehmann(float(np.median(walsh)), (float(walsh[k - 1]), float(walsh[m - k])),
                         level, coverage, n, method, (k, m + 1 - k))


# ----------------------------------------------------------------------------- nested design


@dataclass(frozen=True)
class NestedEffect:
    """The mean effect of a nested design (several adaptation seeds per base-net
    replicate), analysed on the group means: ``estimate`` is their unweighted mean, ``se``
    their standard deviation over ``sqrt(n_groups)``, ``ci`` the two-sided ``1 - alpha``
    t interval and ``p_value`` the two-sided t test of mean 0, both with ``df = n_groups -
    1``. ``between_var`` / ``within_var`` are the one-way random-effects ANOVA components
    (method of moments, between truncated at 0; within is NaN when no group has two
    values, and between is then NaN too). Equal group means give ``se = 0``, the point
    interval and ``p_value`` 0 (mean != 0) or 1 (mean 0)."""

    estimate: float
    se: float
    ci: Interval
    p_value: float
    df: int
    alpha: float
    n: int
    n_groups: int
    groups: tuple[Hashable, ...]
    group_sizes: tuple[int, ...]
    group_means: tuple[float, ...]
    between_var: float
    within_var: float


def nested_effect(d: Sequence[float], groups: Sequence[Hashable],
                  alpha: float = 0.05) -> NestedEffect:
    """The nested analysis of ``d`` with ``groups[i]`` the base-net replicate of ``d[i]``.

    The unit of replication is the base net: adaptation seeds on one base net share its
    error, so treating them as independent replicates understates the SE. Each group
    counts once, whatever its size (the unweighted mean of group means; its SE from their
    sample SD is unbiased for unbalanced groups too, the t degrees of freedom
    ``n_groups - 1`` are then approximate). The variance components use
    ``MSB = sum n_i (m_i - m)^2 / (g - 1)`` (``m`` the grand mean of all values),
    ``MSW = sum (d_ij - m_i)^2 / (N - g)``, ``n0 = (N - sum n_i^2 / N) / (g - 1)``:
    ``within = MSW``, ``between = max(0, (MSB - MSW) / n0)``. To decide a claim on nested
    data, pass ``group_means`` to :func:`superiority` and the like."""
    alpha = _alpha(alpha, upper=1.0)
    a = _sample(d, "d")
    labels = list(groups)
    if len(labels) != a.size:
        raise ValueError(f"groups: {len(labels)} labels for {a.size} values of d")
    index: dict[Hashable, list[int]] = {}
    for pos, g in enumerate(labels):
        index.setdefault(g, []).append(pos)
    if len(index) < 2:
        raise ValueError(f"groups: need at least 2 groups, got {len(index)}")
    members = [a[idx] for idx in index.values()]
    sizes = np.array([v.size for v in members])
    means = np.array([float(v[0]) if np.all(v == v[0]) else float(v.mean()) for v in members])
    g, big_n = means.size, a.size
    s = _summarise(means)
    ci = _ci(means, s, 1 - alpha)
    if s.sd == 0.0:
        p = 0.0 if s.mean != 0.0 else 1.0
    else:
        p = float(2 * stats.t.sf(abs(s.mean) / s.se, g - 1))
    if big_n > g:
        grand = float(a.mean())
        msb = float(np.sum(sizes * (means - grand) ** 2)) / (g - 1)
        msw = float(sum(np.sum((v - mv) ** 2) for v, mv in zip(members, means, strict=True)))
        msw /= big_n - g
        n0 = (big_n - float(np.sum(sizes**2)) / big_n) / (g - 1)
        within, between = msw, max(0.0, (msb - msw) / n0)
    else:
        within = between = math.nan
    return NestedEffect(s.mean, s.se, ci, p, g - 1, alpha, big_n, g, tuple(index),
                        tuple(int(v) for v in sizes), tuple(means.tolist()), between, within)


# ----------------------------------------------------------------------------- power


def paired_t_power(n: int, effect: float, sd: float, alpha: float = 0.05,
                   kind: str = "superiority",
                   margin: float | Sequence[float] | None = None) -> float:
    """Power of the one-sided paired t test at ``n`` replicates (differences
    ~ N(effect, sd^2)), ``effect`` on the good side's scale (positive = better).

    - superiority: ``1 - F_nct(t_{1-alpha, n-1}; n - 1, effect / sd * sqrt(n))``;
    - non_inferiority: the same with noncentrality ``(effect + margin) / sd * sqrt(n)``;
    - equivalence (TOST, ``effect`` the true mean, ``margin`` as in :func:`equivalence`):
      exact by numerical integration over the sample SD: with ``u = s / sd``,
      ``power = E_u[max(0, Phi((high - effect) / se - t u) - Phi((low - effect) / se + t u))]``,
      ``se = sd / sqrt(n)``, ``t = t_{1-alpha, n-1}``, ``(n - 1) u^2 ~ chi2(n - 1)``,
      integrated over the chi2 quantile so the mass is never missed.
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    alpha, sd = _alpha(alpha), _positive(sd, "sd")
    effect = float(effect)
    if not math.isfinite(effect):
        raise ValueError(f"effect must be finite, got {effect}")
    if kind not in POWER_KINDS:
        raise ValueError(f"kind must be one of {POWER_KINDS}, got {kind!r}")
    df = n - 1
    tc = float(stats.t.ppf(1 - alpha, df))
    if kind in ("superiority", "non_inferiority"):
        if kind == "superiority":
            if margin not in (None, 0, 0.0):
                raise ValueError(f"margin: a superiority test has none, got {margin}")
            shift = effect
        else:
            if margin is None:
                raise ValueError("margin: non_inferiority needs a positive margin")
            shift = effect + _positive(margin, "margin")  # type: ignore[arg-type]
        return float(stats.nct.sf(tc, df, shift / sd * math.sqrt(n)))
    if margin is None:
        raise ValueError("margin: equivalence needs a margin")
    low, high = _margins(margin)
    se = sd / math.sqrt(n)
    a, b = (high - effect) / se, (low - effect) / se
    u_max = (a - b) / (2 * tc)  # beyond this sample SD the 1 - 2 alpha CI is wider than the margins
    q_max = float(stats.chi2.cdf(df * u_max**2, df))
    if q_max <= 0.0:
        return 0.0

    def integrand(q: float) -> float:
        u = math.sqrt(float(stats.chi2.ppf(q, df)) / df)
        return max(0.0, float(stats.norm.cdf(a - tc * u) - stats.norm.cdf(b + tc * u)))

    value, _ = integrate.quad(integrand, 0.0, q_max, limit=200, epsabs=1e-10, epsrel=1e-8)
    return float(min(1.0, max(0.0, value)))


def replicates_for_power(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05,
                         kind: str = "superiority",
                         margin: float | Sequence[float] | None = None,
                         n_max: int = 1_000_000) -> int:
    """The smallest number of paired replicates ``n >= 2`` whose :func:`paired_t_power`
    reaches ``power``. The search starts at 2 and doubles, then bisects; the power of these
    tests increases with ``n``, so this is the first ``n`` an iteration from 2 would find.
    Raises ``ValueError`` when the target is unreachable (an effect not on the good side, a
    TOST effect outside the margins) or needs more than ``n_max`` replicates."""
    power = float(power)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    paired_t_power(2, effect, sd, alpha, kind, margin)  # validates every argument
    effect = float(effect)
    if kind == "superiority" and not effect > 0.0:
        raise ValueError(f"effect must be positive (on the good side) for superiority, "
                         f"got {effect}")
    if kind == "non_inferiority" and not effect + float(margin) > 0:  # type: ignore[arg-type]
        raise ValueError(f"effect {effect} is beyond the margin -{margin}: power cannot grow")
    if kind == "equivalence":
        low, high = _margins(margin)  # type: ignore[arg-type]
        if not low < effect < high:
            raise ValueError(f"effect {effect} lies outside the margins ({low}, {high})")

    def pw(n: int) -> float:
        return paired_t_power(n, effect, sd, alpha, kind, margin)

    lo, hi = 1, 2  # pw(lo) < power is assumed for lo = 1 (no test at all)
    while pw(hi) < power:
        lo, hi = hi, hi * 2
        if lo > n_max:
            raise ValueError(f"more than n_max = {n_max} replicates needed")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pw(mid) >= power else (mid, hi)
    if hi > n_max:
        raise ValueError(f"more than n_max = {n_max} replicates needed ({hi})")
    return hi


# ----------------------------------------------------------------------------- seeds, divergence


@dataclass(frozen=True)
class SeedAgreement:
    """Welch's interval of ``mean(d_seed0) - mean(d_seed1)``; the seeds ``agree`` when it
    covers 0. With zero variance in both, the interval is the point difference."""

    difference: float
    ci: Interval
    df: float
    level: float
    n: tuple[int, int]
    agree: bool


def seeds_agree(d_seed0: Sequence[float], d_seed1: Sequence[float],
                level: float = 0.95) -> SeedAgreement:
    """Do two base seeds' mean effects agree? Welch's t interval of the difference of the
    means at ``level`` with Welch-Satterthwaite degrees of freedom."""
    level = _level(level)
    s0 = _summarise(_sample(d_seed0, "d_seed0"))
    s1 = _summarise(_sample(d_seed1, "d_seed1"))
    diff = s0.mean - s1.mean
    v0, v1 = s0.se**2, s1.se**2
    if v0 + v1 == 0.0:
        return SeedAgreement(diff, (diff, diff), math.inf, level, (s0.n, s1.n), diff == 0.0)
    df = (v0 + v1) ** 2 / (v0**2 / (s0.n - 1) + v1**2 / (s1.n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(v0 + v1)
    lo, hi = diff - half, diff + half
    return SeedAgreement(diff, (lo, hi), df, level, (s0.n, s1.n), lo <= 0.0 <= hi)


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` runs, the rate ``k / n`` and its Clopper-Pearson interval."""

    k: int
    n: int
    rate: float
    ci: Interval
    level: float


def divergence_rate(k: int, n: int, level: float = 0.95) -> Rate:
    """``k`` of ``n`` runs diverged: the rate with its exact (Clopper-Pearson) interval,
    ``[Beta(a/2; k, n-k+1), Beta(1-a/2; k+1, n-k)]`` (0 for ``k = 0``, 1 for ``k = n``)."""
    level = _level(level)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise ValueError(f"k and n must be integers, got k={k!r}, n={n!r}")
    k, n = int(k), int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n={n}], got {k}")
    tail = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return Rate(k, n, k / n, (lo, hi), level)


def is_diverged(final_loss: float, parent_loss: float, factor: float = 10.0) -> bool:
    """True when ``final_loss`` is non-finite or exceeds ``factor * parent_loss`` (the loss
    of the net it was adapted from)."""
    parent_loss = _positive(parent_loss, "parent_loss")
    factor = _positive(factor, "factor")
    final_loss = float(final_loss)
    return not math.isfinite(final_loss) or final_loss > factor * parent_loss
