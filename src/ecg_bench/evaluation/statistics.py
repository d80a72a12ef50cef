"""Confidence intervals and results tables.

* ``bootstrap_ci``: percentile bootstrap CI of a mean over per-sample scores (one run);
* ``summarize_runs``: mean, std and t-based CI of metrics over several runs (folds x seeds);
* ``format_table``: a plain-text table of conditions x metrics, in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

_MAX_BOOT_CELLS = 4_000_000  # resample indices drawn per chunk (bounds memory for large n)


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Return ``(mean, low, high)``: the sample mean and its percentile-bootstrap ``1 - alpha`` CI.

    ``n_boot`` resamples of ``len(values)`` draws with replacement (vectorised, seeded).
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value, got none")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_BOOT_CELLS // x.size)
    sizes = [min(chunk, n_boot - i) for i in range(0, n_boot, chunk)]
    means = np.concatenate([x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1) for k in sizes])
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(low), float(high)


def _summary(values: np.ndarray, confidence: float) -> dict[str, float]:
    """Mean, std (ddof=1), n and a Student-t CI of one metric's values."""
    from scipy import stats

    n = int(values.size)
    mean = float(values.mean())
    if n == 1:
        return {"mean": mean, "std": 0.0, "n": 1, "ci_low": mean, "ci_high": mean}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def summarize_runs(runs: Sequence[Mapping[str, float]], confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Aggregate metric dicts from several runs (e.g. folds x seeds), metric by metric.

    Returns ``{metric: {"mean", "std", "n", "ci_low", "ci_high"}}``: std uses ddof=1 and the CI is
    ``mean +- t_{(1+confidence)/2, n-1} * std / sqrt(n)``; with n = 1 the std is 0 and the CI is the
    value itself. A metric missing from some runs is summarised over the runs that have it.
    """
    if not runs:
        raise ValueError("summarize_runs needs at least one run, got none")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    names = list(dict.fromkeys(k for run in runs for k in run))
    return {name: _summary(np.array([float(run[name]) for run in runs if name in run]), confidence) for name in names}


def _cell(value: float | Mapping[str, float] | None) -> str:
    """A float as a percent with one decimal; a summarize_runs dict as ``mean [low, high]``."""
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        mean = f"{100 * float(value['mean']):.1f}"
        if "ci_low" in value and "ci_high" in value:
            return f"{mean} [{100 * float(value['ci_low']):.1f}, {100 * float(value['ci_high']):.1f}]"
        return mean
    return f"{100 * float(value):.1f}"


def format_table(rows: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> str:
    """Plain-text table: one row per condition (e.g. real, zeros, no_signal), one column per metric.

    Values are 0-1 scores printed as percentages with one decimal (``0.4567`` -> ``45.7``); a value may
    also be a ``summarize_runs`` entry, printed as ``mean [ci_low, ci_high]``; a missing one is ``-``.
    Columns are right-aligned; the first column holds the row names.
    """
    header = ["condition", *metrics]
    body = [[name, *(_cell(vals.get(m)) for m in metrics)] for name, vals in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])
