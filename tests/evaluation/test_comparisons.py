"""The report's paired statistics against scipy / statsmodels on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from ecg_bench.evaluation.comparisons import holm, mcnemar, paired_difference, t_interval


def _pairs(n10: int, n01: int, n11: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    a = [1] * n10 + [0] * n01 + [1] * n11 + [0] * n00
    b = [0] * n10 + [1] * n01 + [1] * n11 + [0] * n00
    return np.array(a, float), np.array(b, float)


@pytest.mark.parametrize(("n10", "n01", "exact"), [(7, 2, True), (3, 3, True), (0, 5, True), (30, 14, False), (12, 13, False)])
def test_mcnemar_matches_statsmodels(n10, n01, exact):
    a, b = _pairs(n10, n01, 20, 11)
    got = mcnemar(a, b)
    ref = sm_mcnemar([[20, n10], [n01, 11]], exact=exact, correction=True)
    assert got.exact is exact and (got.b, got.c) == (n10, n01)
    assert got.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert got.statistic == pytest.approx(ref.statistic)


def test_mcnemar_known_value_and_bad_input():
    # 7 vs 2 discordant pairs: exact two-sided binomial p = 2 * P(X <= 2 | 9, 0.5) = 2 * 46 / 512
    assert mcnemar(*_pairs(7, 2, 5, 5)).p_value == pytest.approx(92 / 512)
    assert mcnemar(*_pairs(0, 0, 5, 5)).p_value == 1.0
    with pytest.raises(ValueError, match="0/1"):
        mcnemar([0.5, 1.0], [1.0, 0.0])


def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005, 0.5, 0.04]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist())
    assert holm([0.2]) == [0.2]
    with pytest.raises(ValueError, match="p-values"):
        holm([0.1, 1.5])


def test_t_interval_matches_scipy():
    x = np.array([0.61, 0.58, 0.66, 0.52, 0.60, 0.57])
    got = t_interval(x)
    lo, hi = stats.t.interval(0.95, df=x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert (got["mean"], got["std"], got["n"]) == (pytest.approx(x.mean()), pytest.approx(x.std(ddof=1)), 6)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_paired_difference_one_pair_per_patient_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.binomial(1, 0.8, 120).astype(float)
    b = rng.binomial(1, 0.4, 120).astype(float)
    got = paired_difference(a, b, [f"p{i}" for i in range(a.size)], n_resamples=20_000, seed=1)
    ref = stats.bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, method="percentile", n_resamples=20_000,
                          random_state=1)  # fmt: skip
    assert got.mean == pytest.approx((a - b).mean())
    assert got.low == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert got.high == pytest.approx(ref.confidence_interval.high, abs=0.01)
    assert (got.n, got.clusters) == (120, 120) and not got.covers_zero() and got.p_bootstrap < 0.01


def test_paired_difference_resamples_patients_not_answers():
    # 10 patients x 10 answers; each patient's answers identical: the clustered CI is wider than the per-answer one
    rng = np.random.default_rng(2)
    per_patient = rng.binomial(1, 0.5, (10, 2)).astype(float)
    a, b = np.repeat(per_patient[:, 0], 10), np.repeat(per_patient[:, 1], 10)
    patients = np.repeat([f"p{i}" for i in range(10)], 10)
    clustered = paired_difference(a, b, patients, n_resamples=4000)
    naive = paired_difference(a, b, np.arange(a.size), n_resamples=4000)
    assert clustered.mean == naive.mean and clustered.clusters == 10
    assert clustered.high - clustered.low > 2 * (naive.high - naive.low)
    same = paired_difference(a, a, patients)
    assert (same.mean, same.low, same.high, same.p_bootstrap) == (0.0, 0.0, 0.0, 1.0) and same.covers_zero()
