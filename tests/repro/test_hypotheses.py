"""Tests of pre-registered endpoints on known inputs: p-values and intervals against scipy
and hand computations, textbook Holm, TOST = the 90 % interval rule, Hodges-Lehmann's
robustness and coverage, the nested design, power, seeds, divergence."""

import math

import numpy as np
import pytest
from scipy import stats

from tgd.repro.hypotheses import (
    Decision,
    divergence_rate,
    equivalence,
    hodges_lehmann,
    holm,
    holm_adjust,
    is_diverged,
    nested_effect,
    non_inferiority,
    paired_t_power,
    replicates_for_power,
    seeds_agree,
    signed_rank_cdf,
    superiority,
)

D = [0.8, 1.9, 0.3, 1.4, 2.2, 0.9, 1.1]  # mean 1.2286, clearly positive


# ----------------------------------------------------------------------------- superiority


def test_superiority_matches_scipy_one_sided_t_test_and_interval():
    dec = superiority(D, "greater")
    ref = stats.ttest_1samp(D, 0.0, alternative="greater")
    assert dec.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    # one-sided 95 % bound = mean - t(0.95, 6) * s / sqrt(n), by hand
    a = np.array(D)
    bound = a.mean() - stats.t.ppf(0.95, 6) * a.std(ddof=1) / math.sqrt(7)
    assert dec.ci[0] == pytest.approx(bound, rel=1e-10) and dec.ci[1] == math.inf
    assert dec.bound == pytest.approx(bound, rel=1e-10)
    assert dec.ci[0] == pytest.approx(ref.confidence_interval(0.95).low, rel=1e-10)
    ci95 = stats.ttest_1samp(D, 0.0).confidence_interval(0.95)
    assert dec.ci95 == pytest.approx((ci95.low, ci95.high), rel=1e-10)
    assert dec.estimate == pytest.approx(a.mean())
    assert (dec.verdict, dec.decided_by, dec.n, dec.direction) == ("holds", "p-value", 7,
                                                                  "greater")
    assert dec.margin == 0.0 and dec.alpha == 0.05


def test_superiority_less_and_the_three_verdicts():
    neg = [-x for x in D]
    dec = superiority(neg, "less")
    assert dec.p_value == pytest.approx(
        stats.ttest_1samp(neg, 0.0, alternative="less").pvalue, rel=1e-10)
    assert dec.verdict == "holds" and dec.ci[0] == -math.inf
    # significantly in the opposite direction: does not hold, decided by the interval
    wrong = superiority(neg, "greater")
    assert wrong.verdict == "does not hold" and wrong.decided_by == "interval"
    assert wrong.ci_two_sided[1] < 0 and wrong.p_value > 0.99
    # straddling zero: inconclusive
    flat = superiority([-1.0, 1.2, -0.8, 0.9, 0.1], "greater")
    assert flat.verdict == "inconclusive" and flat.decided_by == "neither"
    assert flat.ci_two_sided[0] < 0 < flat.ci_two_sided[1]


def test_superiority_verdict_is_the_one_sided_bound_rule_on_random_samples():
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = rng.normal(rng.normal(0, 1), 1, size=rng.integers(2, 12))
        dec = superiority(d, "greater", alpha=0.1)
        assert (dec.verdict == "holds") == (dec.bound > 0)
        assert (dec.verdict == "does not hold") == (dec.ci_two_sided[1] < 0)
        assert dec.ci_two_sided[0] == pytest.approx(
            stats.ttest_1samp(d, 0).confidence_interval(0.8).low, rel=1e-9, abs=1e-12)


def test_zero_variance_is_deterministic():
    up = superiority([0.5, 0.5, 0.5], "greater")
    assert (up.p_value, up.ci, up.ci95, up.verdict) == (0.0, (0.5, math.inf), (0.5, 0.5),
                                                         "holds")
    down = superiority([0.5, 0.5, 0.5], "less")
    assert (down.p_value, down.verdict) == (1.0, "does not hold")
    zero = superiority([0.0, 0.0], "greater")
    assert (zero.p_value, zero.verdict) == (1.0, "inconclusive")
    # 0.1 three times: an inexact float mean must not leak a tiny spurious SD
    assert superiority([0.1, 0.1, 0.1]).sd == 0.0
    assert non_inferiority([-0.2, -0.2], margin=0.5).verdict == "holds"
    assert non_inferiority([-0.7, -0.7], margin=0.5).verdict == "does not hold"
    assert equivalence([0.2] * 4, margin=0.5).verdict == "holds"
    assert equivalence([0.9] * 4, margin=0.5).verdict == "does not hold"


# ----------------------------------------------------------------------------- non-inferiority


def test_non_inferiority_matches_scipy_and_flips_when_the_margin_shrinks():
    d = [-0.10, -0.02, -0.20, -0.05, -0.08, -0.12]  # worse, mean -0.095, 90 % CI (-0.146, -0.044)
    wide = non_inferiority(d, margin=0.3, direction="greater")
    assert wide.p_value == pytest.approx(
        stats.ttest_1samp(d, -0.3, alternative="greater").pvalue, rel=1e-10)
    assert wide.verdict == "holds" and wide.bound > -0.3
    mid = non_inferiority(d, margin=0.1, direction="greater")
    assert mid.verdict == "inconclusive" and mid.bound < -0.1 < mid.ci_two_sided[1]
    tight = non_inferiority(d, margin=0.01, direction="greater")
    assert tight.verdict == "does not hold" and tight.ci_two_sided[1] < -0.01
    assert tight.decided_by == "interval"
    # "less" is better (e.g. a bias): the mirror image gives the same p-values
    mirrored = non_inferiority([-x for x in d], margin=0.3, direction="less")
    assert mirrored.p_value == pytest.approx(wide.p_value, rel=1e-10)
    assert mirrored.p_value == pytest.approx(
        stats.ttest_1samp([-x for x in d], 0.3, alternative="less").pvalue, rel=1e-10)
    assert mirrored.verdict == "holds" and mirrored.ci[1] < 0.3


# ----------------------------------------------------------------------------- equivalence


def test_tost_p_is_the_larger_one_sided_p_and_agrees_with_the_90_percent_interval_rule():
    d = [0.05, -0.10, 0.12, 0.00, -0.04, 0.08, 0.02, -0.03]
    dec = equivalence(d, margin=0.2)
    p_lo = stats.ttest_1samp(d, -0.2, alternative="greater").pvalue
    p_hi = stats.ttest_1samp(d, 0.2, alternative="less").pvalue
    assert dec.p_value == pytest.approx(max(p_lo, p_hi), rel=1e-10)
    ci90 = stats.ttest_1samp(d, 0).confidence_interval(0.90)
    assert dec.ci == pytest.approx((ci90.low, ci90.high), rel=1e-10)
    assert dec.margin == (-0.2, 0.2) and dec.direction == "within"
    assert dec.verdict == "holds"
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(300):
        d = rng.normal(rng.uniform(-0.6, 0.6), rng.uniform(0.05, 0.5), size=rng.integers(3, 15))
        low, high = -rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)
        dec = equivalence(d, margin=(low, high))
        lo, hi = stats.ttest_1samp(d, 0).confidence_interval(0.90)
        inside, outside = low < lo and hi < high, lo > high or hi < low
        expected = "holds" if inside else "does not hold" if outside else "inconclusive"
        assert dec.verdict == expected
        seen.add(dec.verdict)
    assert seen == {"holds", "does not hold", "inconclusive"}


def test_equivalence_asymmetric_margins():
    d = [0.25, 0.3, 0.28, 0.27, 0.3]
    assert equivalence(d, margin=0.2).verdict == "does not hold"
    assert equivalence(d, margin=(-0.1, 0.5)).verdict == "holds"


# ----------------------------------------------------------------------------- Holm


def test_holm_textbook_adjusted_p_values():
    fam = holm([0.01, 0.04, 0.03, 0.005])
    assert fam.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert fam.rejected == (True, False, False, True)
    assert fam.decisions == ()
    # capped at 1 and monotone in the raw p
    adj = holm_adjust([0.5, 0.9, 0.2, 0.6])
    assert adj.max() == 1.0
    order = np.argsort([0.5, 0.9, 0.2, 0.6])
    assert np.all(np.diff(adj[order]) >= 0)
    assert holm([0.02]).adjusted == (0.02,)


def test_holm_on_decisions_demotes_a_surviving_holds_only_when_it_does_not_survive():
    strong = superiority([1.0, 1.2, 0.9, 1.1, 1.05], "greater")            # p ~ 1e-6
    weak = superiority([0.3, -0.1, 0.5, 0.2, 0.4, 0.1], "greater")         # p ~ 0.025
    refuted = superiority([-1.0, -1.2, -0.9, -1.1], "greater")            # wrong side
    unsure = superiority([-0.5, 0.6, 0.1, -0.2], "greater")
    assert strong.verdict == weak.verdict == "holds" and 0.01 < weak.p_value < 0.05
    fam = holm([strong, weak, refuted, unsure])
    new = fam.decisions
    assert [x.verdict for x in new] == ["holds", "inconclusive", "does not hold",
                                        "inconclusive"]
    assert new[1].p_adjusted == pytest.approx(3 * weak.p_value)
    assert new[1].p_value == weak.p_value  # the raw p stays
    assert all(isinstance(x, Decision) for x in new)
    assert new[1].ci == weak.ci  # intervals are not adjusted
    # a "does not hold" not backed by its own interval is not carried through
    hand = Decision("superiority", -0.1, (-1.0, math.inf), (-1.0, 1.0), (-1.0, 1.0), 0.6,
                    0.0, "greater", 0.05, 5, 1.0, "does not hold", "neither")
    assert holm([strong, hand]).decisions[1].verdict == "inconclusive"
    with pytest.raises(ValueError, match="alpha"):
        holm([strong, superiority(D, alpha=0.1)])
    with pytest.raises(ValueError, match="mix"):
        holm([strong, 0.01])
    with pytest.raises(ValueError, match="p_values"):
        holm([0.1, 1.5])


# ----------------------------------------------------------------------------- Hodges-Lehmann


def test_signed_rank_distribution_matches_scipy_exact_wilcoxon():
    cdf = signed_rank_cdf(10)
    assert cdf[-1] == pytest.approx(1.0) and cdf[8] == pytest.approx(0.0244140625)
    rng = np.random.default_rng(3)
    for n in (4, 7, 10, 15):
        x = rng.normal(0.3, 1, n)
        r_plus = stats.wilcoxon(x, method="exact").statistic  # min(T+, T-)
        p = stats.wilcoxon(x, method="exact", alternative="two-sided").pvalue
        assert p == pytest.approx(min(1.0, 2 * signed_rank_cdf(n)[int(r_plus)]), rel=1e-10)


def test_hodges_lehmann_is_the_median_of_walsh_averages_with_the_exact_interval():
    d = [1.2, -0.4, 0.8, 2.1, 0.3, 1.7, 0.9, -0.2, 1.1, 0.6]
    hl = hodges_lehmann(d)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(10) for j in range(i, 10))
    assert hl.estimate == pytest.approx(float(np.median(walsh)))
    # n = 10, 95 %: the table value C = 9, i.e. [W(9), W(47)], coverage 1 - 2 * 25 / 1024
    assert hl.ranks == (9, 47) and hl.method == "exact"
    assert hl.ci == (walsh[8], walsh[46])
    assert hl.coverage == pytest.approx(1 - 2 * 25 / 1024) and hl.coverage >= 0.95
    # duality: scipy's exact signed-rank test rejects just outside, not just inside
    eps = 1e-9
    for theta, rejected in ((hl.ci[0] - eps, True), (hl.ci[0] + eps, False),
                            (hl.ci[1] + eps, True), (hl.ci[1] - eps, False)):
        p = stats.wilcoxon(np.array(d) - theta, method="exact").pvalue
        assert (p <= 0.05) == rejected


def test_hodges_lehmann_resists_an_outlier_the_mean_does_not():
    bulk = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.08, 1.03, 0.97, 1.01, 0.99, 1.04, 0.96]
    d = bulk + [1000.0]
    hl = hodges_lehmann(d)
    assert abs(hl.estimate - 1.0) < 0.05
    assert abs(np.mean(d) - 1.0) > 60
    # n = 15: the 15 Walsh averages with the outlier sit above W(M + 1 - k), k = 26
    assert hl.ranks == (26, 95) and hl.ranks[0] - 1 >= len(d)
    assert 0.9 < hl.ci[0] < 1.0 < hl.ci[1] < 1.2


def test_hodges_lehmann_coverage_by_simulation():
    rng = np.random.default_rng(4)
    n, draws, centre = 12, 400, 0.7
    hits = 0
    for _ in range(draws):
        x = centre + rng.standard_t(3, n)  # heavy tailed, symmetric
        lo, hi = hodges_lehmann(x).ci
        hits += lo <= centre <= hi
    assert hits / draws >= 0.95 - 0.03


def test_hodges_lehmann_small_and_large_n():
    tiny = hodges_lehmann([0.1, 0.4, 0.2, 0.3, 0.5])  # n = 5 cannot reach 95 %
    assert tiny.ranks == (1, 15) and tiny.ci == (0.1, 0.5)
    assert tiny.coverage == pytest.approx(1 - 2 / 32) and tiny.coverage < 0.95
    rng = np.random.default_rng(5)
    big = hodges_lehmann(rng.normal(0, 1, 80))
    assert big.method == "normal" and 0.949 < big.coverage < 0.96
    assert big.ci[0] < big.estimate < big.ci[1]
    # beyond n = 50 the normal approximation picks the exact order statistic (n = 60)
    cdf = signed_rank_cdf(60)
    k_exact = int(np.flatnonzero(cdf <= 0.025)[-1]) + 1
    approx = hodges_lehmann(rng.normal(0, 1, 60))
    assert approx.method == "normal" and abs(approx.ranks[0] - k_exact) <= 1


# ----------------------------------------------------------------------------- nested


def test_nested_with_no_within_variance_is_the_group_mean_t_test():
    means = [0.4, 1.1, 0.7, 0.2]
    sizes = [3, 1, 2, 4]  # unbalanced on purpose
    d = [m for m, k in zip(means, sizes, strict=True) for _ in range(k)]
    groups = [g for g, k in enumerate(sizes) for _ in range(k)]
    res = nested_effect(d, groups, alpha=0.05)
    ref = stats.ttest_1samp(means, 0.0)
    ci = ref.confidence_interval(0.95)
    assert res.estimate == pytest.approx(np.mean(means))
    assert res.ci == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.df == 3 and res.n_groups == 4 and res.n == 10
    assert res.group_sizes == (3, 1, 2, 4) and res.group_means == pytest.approx(means)
    # within 0; between = MSB / n0 by hand (n0 = (N - sum n_i^2 / N) / (g - 1))
    grand = np.mean(d)
    msb = sum(k * (m - grand) ** 2 for m, k in zip(means, sizes, strict=True)) / 3
    n0 = (10 - sum(k * k for k in sizes) / 10) / 3
    assert res.within_var == 0.0 and res.between_var == pytest.approx(msb / n0, rel=1e-12)
    # balanced: between = var(group means) - within / k, the textbook moment identity
    rng = np.random.default_rng(8)
    y = rng.normal(0, 1, (6, 3)) + rng.normal(0, 2, (6, 1))
    bal = nested_effect(y.ravel(), np.repeat(range(6), 3))
    within = y.var(axis=1, ddof=1).mean()
    assert bal.within_var == pytest.approx(within, rel=1e-12)
    assert bal.between_var == pytest.approx(
        max(0.0, y.mean(axis=1).var(ddof=1) - within / 3), rel=1e-12)
    # the naive analysis (every value a replicate) would claim a far smaller SE
    assert stats.sem(d) < res.se


def test_nested_recovers_planted_variance_components():
    rng = np.random.default_rng(6)
    g, k, sb, sw = 400, 5, 2.0, 1.0
    base = rng.normal(0.5, sb, g)
    d = (base[:, None] + rng.normal(0, sw, (g, k))).ravel()
    groups = np.repeat([f"base{i}" for i in range(g)], k)
    res = nested_effect(d, groups)
    assert res.between_var == pytest.approx(sb**2, rel=0.15)
    assert res.within_var == pytest.approx(sw**2, rel=0.05)
    assert res.ci[0] < 0.5 < res.ci[1]
    # truncation: no between-group variance planted, estimate is clipped at 0 not negative
    flat = nested_effect(rng.normal(0, 1, 40), np.repeat(range(20), 2))
    assert flat.between_var >= 0.0


def test_nested_validation():
    with pytest.raises(ValueError, match="groups"):
        nested_effect([1.0, 2.0, 3.0], [0, 0])
    with pytest.raises(ValueError, match="groups"):
        nested_effect([1.0, 2.0, 3.0], [0, 0, 0])
    one_each = nested_effect([1.0, 2.0, 4.0], ["a", "b", "c"])
    assert math.isnan(one_each.within_var) and math.isnan(one_each.between_var)


# ----------------------------------------------------------------------------- power


def test_replicates_for_power_effect_size_one_is_eight():
    n = replicates_for_power(1.0, 1.0, power=0.8, alpha=0.05)
    assert n == 8

    def nct_power(n):
        return 1 - stats.nct.cdf(stats.t.ppf(0.95, n - 1), n - 1, math.sqrt(n))

    assert nct_power(8) >= 0.8 > nct_power(7)
    assert paired_t_power(8, 1.0, 1.0) == pytest.approx(nct_power(8), rel=1e-10)
    ns = [replicates_for_power(e, 1.0) for e in (0.3, 0.5, 1.0, 1.5, 2.0)]
    assert ns == sorted(ns, reverse=True) and ns[0] > ns[-1]
    # scales with sd: only effect / sd matters
    assert replicates_for_power(2.0, 2.0) == 8


def test_power_for_non_inferiority_and_tost():
    # non-inferiority: the true effect 0, margin 0.5 sd -> the superiority n for effect 0.5
    assert replicates_for_power(0.0, 1.0, kind="non_inferiority", margin=0.5) == \
        replicates_for_power(0.5, 1.0)
    # TOST power by integration agrees with a seeded simulation of the test itself
    rng = np.random.default_rng(7)
    n, mu, sd, m = 15, 0.1, 1.0, 0.6
    x = rng.normal(mu, sd, (20000, n))
    se = x.std(axis=1, ddof=1) / math.sqrt(n)
    tc = stats.t.ppf(0.95, n - 1)
    sim = np.mean((x.mean(axis=1) - tc * se > -m) & (x.mean(axis=1) + tc * se < m))
    assert paired_t_power(n, mu, sd, kind="equivalence", margin=m) == pytest.approx(sim,
                                                                                  abs=0.01)
    k = replicates_for_power(0.0, 1.0, kind="equivalence", margin=0.5)
    assert paired_t_power(k, 0.0, 1.0, kind="equivalence", margin=0.5) >= 0.8
    assert paired_t_power(k - 1, 0.0, 1.0, kind="equivalence", margin=0.5) < 0.8
    assert k > replicates_for_power(0.0, 1.0, kind="equivalence", margin=1.0)
    with pytest.raises(ValueError, match="outside the margins"):
        replicates_for_power(0.7, 1.0, kind="equivalence", margin=0.5)
    with pytest.raises(ValueError, match="effect"):
        replicates_for_power(-0.1, 1.0)
    with pytest.raises(ValueError, match="kind"):
        paired_t_power(5, 1.0, 1.0, kind="bigger")


# ----------------------------------------------------------------------------- seeds, divergence


def test_seeds_agree_is_welchs_interval():
    a, b = [1.0, 2.0, 3.5], [2.0, 5.0, 6.0, 7.0]
    res = seeds_agree(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.ci == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert res.df == pytest.approx(ref.df, rel=1e-10)
    assert res.difference == pytest.approx(np.mean(a) - np.mean(b)) and res.agree
    apart = seeds_agree([1.0, 1.1, 0.9, 1.05], [3.0, 3.1, 2.9, 3.05])
    assert not apart.agree and apart.ci[1] < 0
    assert seeds_agree([1.0, 1.0], [1.0, 1.0]).agree
    assert not seeds_agree([1.0, 1.0], [2.0, 2.0]).agree


def test_divergence_rate_clopper_pearson():
    r = divergence_rate(0, 10)
    assert r.ci[0] == 0.0 and r.ci[1] == pytest.approx(0.3085, abs=1e-4)
    assert r.ci[1] == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-10)
    for k, n in ((3, 20), (10, 10), (1, 7)):
        ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert divergence_rate(k, n).ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert divergence_rate(10, 10).ci[1] == 1.0
    with pytest.raises(ValueError, match="k"):
        divergence_rate(11, 10)


def test_is_diverged():
    assert is_diverged(float("nan"), 1.0)
    assert is_diverged(float("inf"), 1.0)
    assert is_diverged(-float("inf"), 1.0)
    assert is_diverged(11.0, 1.0)
    assert not is_diverged(9.0, 1.0)
    assert not is_diverged(0.02, 0.01, factor=3)
    with pytest.raises(ValueError, match="parent_loss"):
        is_diverged(1.0, float("nan"))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("call, match", [
    (lambda: superiority([1.0, float("nan")]), "d: NaN"),
    (lambda: superiority([1.0, float("inf")]), "d: NaN"),
    (lambda: superiority([1.0]), "d: need at least 2"),
    (lambda: superiority([[1.0, 2.0], [3.0, 4.0]]), "d: expected a 1-D"),
    (lambda: superiority(D, direction="up"), "direction"),
    (lambda: superiority(D, alpha=0.6), "alpha"),
    (lambda: non_inferiority(D, margin=0.0), "margin"),
    (lambda: non_inferiority(D, margin=-1.0), "margin"),
    (lambda: non_inferiority(D, margin=0.1, direction="sideways"), "direction"),
    (lambda: equivalence(D, margin=0.0), "margin"),
    (lambda: equivalence(D, margin=(0.1, 0.5)), "margin"),
    (lambda: hodges_lehmann([1.0]), "d: need at least 2"),
    (lambda: hodges_lehmann(D, level=1.0), "level"),
    (lambda: seeds_agree([1.0], [1.0, 2.0]), "d_seed0"),
    (lambda: seeds_agree([1.0, 2.0], [1.0, float("nan")]), "d_seed1"),
    (lambda: replicates_for_power(1.0, 0.0), "sd"),
    (lambda: replicates_for_power(0.0, 1.0, kind="non_inferiority", margin=-0.5), "margin"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_describe_is_one_readable_line():
    line = superiority(D).describe()
    assert "superiority" in line and "holds" in line and "\n" not in line
    assert "Holm" in holm([superiority(D), equivalence(D, 5.0)]).decisions[0].describe()
    assert "within" in equivalence(D, 5.0).describe()
