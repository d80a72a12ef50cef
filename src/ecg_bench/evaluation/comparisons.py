"""Paired statistics for comparing two sets of answers to the same test items.

* ``paired_difference``: mean of per-item differences ``a - b`` with a percentile-bootstrap CI that
  resamples whole patients (``statistics.cluster_bootstrap``), and the share of resamples on the
  other side of 0 (a two-sided bootstrap p-value);
* ``mcnemar``: McNemar's test on paired 0/1 outcomes: the exact binomial test on the discordant pairs
  when there are fewer than ``exact_below`` of them, else the chi-square statistic with continuity
  correction (``statsmodels.stats.contingency_tables.mcnemar``'s two forms, checked in the tests);
* ``holm``: Holm's step-down adjustment of a family of p-values (``statsmodels`` ``multipletests``
  ``method="holm"``);
* ``t_interval``: mean, sd and the Student-t interval over runs (folds x seeds), as the original
  ECG-Bench reports (``statistics.summarize_runs`` for one value list).

McNemar treats every pair as independent; answers of one patient are not, so the report shows the
patient-clustered bootstrap CI beside it, and a difference is called only when both agree.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ecg_bench.evaluation.statistics import cluster_bootstrap_many, summarize_runs


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` on paired samples: mean, patient-clustered CI, bootstrap p-value, counts."""

    mean: float
    low: float
    high: float
    p_bootstrap: float
    """Two-sided: twice the smaller share of bootstrap means at or beyond 0 on either side, at most 1."""
    n: int
    clusters: int

    def covers_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    clusters: Sequence[Hashable] | np.ndarray,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDifference:
    """Mean of ``a - b`` (paired per sample) and its ``1 - alpha`` percentile-bootstrap CI, resampling ``clusters``."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired_difference needs two 1-d arrays of the same length, got shapes {x.shape} and {y.shape}")
    if len(clusters) != x.size:
        raise ValueError(f"paired_difference needs one cluster per pair: {len(clusters)} clusters for {x.size} pairs")
    d = x - y
    calls: list[np.ndarray] = []

    def reduce(sums: np.ndarray) -> np.ndarray:
        calls.append(sums[:, 0] / sums[:, 1])
        return calls[-1]

    ((mean, low, high),) = cluster_bootstrap_many([(d, reduce)], clusters, n_resamples, alpha, seed)
    means = np.concatenate(calls[:-1])  # the resampled means; the last call reduced the observed sums
    p = min(1.0, 2.0 * min(float(np.mean(means <= 0.0)), float(np.mean(means >= 0.0))))
    return PairedDifference(mean, low, high, p, int(d.size), len({str(c) for c in clusters}))


@dataclass(frozen=True)
class McNemar:
    """McNemar's test of paired 0/1 outcomes."""

    b: int
    """Pairs right in a, wrong in b."""
    c: int
    """Pairs wrong in a, right in b."""
    statistic: float
    """min(b, c) for the exact test; the corrected chi-square otherwise."""
    p_value: float
    exact: bool


def mcnemar(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, exact_below: int = 25) -> McNemar:
    """McNemar's test on paired outcomes ``a``, ``b`` (each 0 or 1): exact two-sided binomial test of the
    discordant pairs when ``b + c < exact_below``, else chi-square with continuity correction (1 df)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"mcnemar needs two 1-d arrays of the same length, got shapes {x.shape} and {y.shape}")
    if not (np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all()):
        raise ValueError("mcnemar needs 0/1 outcomes (an accuracy metric), got other values")
    n10 = int(np.sum((x == 1) & (y == 0)))
    n01 = int(np.sum((x == 0) & (y == 1)))
    n = n10 + n01
    if n == 0:
        return McNemar(n10, n01, 0.0, 1.0, True)
    if n < exact_below:
        p = float(stats.binomtest(min(n10, n01), n, 0.5).pvalue)
        return McNemar(n10, n01, float(min(n10, n01)), min(1.0, p), True)
    chi2 = (abs(n10 - n01) - 1.0) ** 2 / n
    return McNemar(n10, n01, float(chi2), float(stats.chi2.sf(chi2, 1)), False)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order as given): the i-th smallest is multiplied by (m - i + 1), made
    monotone by a running maximum, and capped at 1."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError(f"holm needs p-values in [0, 1], got {list(p_values)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """``{"mean", "std", "n", "ci_low", "ci_high"}``: the Student-t interval of the mean over runs."""
    return summarize_runs([{"x": float(v)} for v in values], confidence)["x"]
