"""Confidence intervals and results tables.

* ``cluster_bootstrap``: percentile-bootstrap CI of any statistic of per-sample rows, resampling
  whole clusters (patients) with replacement, not single samples;
* ``summarize_condition``: every metric of one evaluation condition with its patient-clustered 95 %
  CI, overall and per question type / topic (what results.json holds per condition);
* ``bootstrap_ci``: the CI of a plain mean, each value its own cluster;
* ``summarize_runs``: mean, std and t-based CI of metrics over several runs (folds x seeds);
* ``format_table``: a plain-text table of conditions x metrics, in percent.

Why clusters: ECG-QA asks the same question about up to 10 items of one ECG, and a patient's
answers are correlated; resampling answer turns as if independent makes intervals too narrow.
Resampling patients keeps each patient's samples together (the cluster bootstrap). With one
sample per patient it is the ordinary percentile bootstrap (checked against scipy.stats.bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from ecg_bench.evaluation.metrics import AnswerSample, CorpusScore, score_samples, value_of

_MAX_BOOT_CELLS = 4_000_000  # resample weights drawn per chunk (bounds memory for many clusters)
GROUPS = {"per_type": "question_type", "per_topic": "topic"}
"""results.json key -> the AnswerSample field its samples are grouped by."""
UNTYPED = "(none)"
"""Group of the samples without a type when others have one."""


def _mean_reduce(sums: np.ndarray) -> np.ndarray:
    return sums[:, 0] / sums[:, 1]


def cluster_bootstrap(
    stats: np.ndarray,
    clusters: Sequence[Hashable] | np.ndarray,
    reduce: Callable[[np.ndarray], np.ndarray] = _mean_reduce,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Return ``(value, low, high)``: ``reduce`` of the summed rows and its percentile-bootstrap CI.

    ``stats`` [n, k] holds per-sample rows whose column sums determine the statistic (a 1-d array
    of scores means rows ``[score, 1]``); ``reduce`` maps summed rows [B, k] to B values (the
    default, for rows ``[score, 1]``, is the mean score). Each of ``n_resamples`` resamples draws
    the G distinct ``clusters`` G times with replacement and sums the rows of every drawn cluster
    (as often as drawn). Seeded: the same inputs give the same interval. Resamples where the statistic is
    undefined (NaN: e.g. an AUROC whose resample drew no positive) are left out of the interval.
    """
    return cluster_bootstrap_many([(stats, reduce)], clusters, n_resamples, alpha, seed)[0]


def cluster_bootstrap_many(
    statistics: Sequence[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]],
    clusters: Sequence[Hashable] | np.ndarray,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[tuple[float, float, float]]:
    """``cluster_bootstrap`` of several ``(stats, reduce)`` of the same samples, on the same resamples.

    Drawing counts ~ Multinomial(G, 1/G) per resample, so the resampled sums are
    ``counts [B, G] @ cluster_sums [G, k]``, drawn in chunks of bounded size.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = len(clusters)
    if n == 0:
        raise ValueError("cluster_bootstrap needs at least one sample, got none")
    _, inverse = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    g = int(inverse.max()) + 1
    rows, reduces, sums = [], [], []
    for stats, reduce in statistics:
        x = np.asarray(stats, dtype=float)
        if x.ndim == 1:
            x = np.stack([x, np.ones_like(x)], axis=1)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"cluster_bootstrap needs per-sample rows [{n}, k] (one per cluster entry), got shape {x.shape}")
        cluster_sums = np.zeros((g, x.shape[1]))
        np.add.at(cluster_sums, inverse, x)
        rows.append(x)
        reduces.append(reduce)
        sums.append(cluster_sums)
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_BOOT_CELLS // g)
    boot: list[list[np.ndarray]] = [[] for _ in rows]
    for start in range(0, n_resamples, chunk):
        counts = rng.multinomial(g, np.full(g, 1.0 / g), size=min(chunk, n_resamples - start))
        for j, (reduce, cluster_sums) in enumerate(zip(reduces, sums)):
            boot[j].append(np.asarray(reduce(counts @ cluster_sums), dtype=float))
    out = []
    for x, reduce, values in zip(rows, reduces, boot):
        values = np.concatenate(values)
        if np.isnan(values).all():
            low = high = float("nan")
        else:  # resamples where the statistic is undefined are left out
            low, high = np.nanquantile(values, [alpha / 2, 1 - alpha / 2])
        out.append((float(np.asarray(reduce(x.sum(axis=0, keepdims=True)))[0]), float(low), float(high)))
    return out


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Return ``(mean, low, high)``: the sample mean and its percentile-bootstrap ``1 - alpha`` CI,
    every value its own cluster (independent samples)."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value, got none")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    _, low, high = cluster_bootstrap(x, np.arange(x.size), n_resamples=n_boot, alpha=alpha, seed=seed)
    return float(x.mean()), low, high


def _corpus_reduce(score: CorpusScore) -> Callable[[np.ndarray], np.ndarray]:
    return lambda sums: np.array([score.reduce(row) for row in sums])


def _statistic(score: np.ndarray | CorpusScore) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Per-sample rows and reduce function of one metric key (a mean: rows [score, 1])."""
    if isinstance(score, CorpusScore):
        return score.stats, _corpus_reduce(score)
    x = np.asarray(score, dtype=float)
    return np.stack([x, np.ones_like(x)], axis=1), _mean_reduce


def cluster_ids(samples: Sequence[AnswerSample]) -> list[str]:
    """The bootstrap cluster of each sample: its patient, or the sample alone when it has no patient id."""
    return [s.patient_id if s.patient_id else f"(sample {i})" for i, s in enumerate(samples)]


def _block(
    keys: Mapping[str, np.ndarray | CorpusScore], clusters: np.ndarray, rows: np.ndarray, n_resamples: int, seed: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"num_samples": int(rows.size), "clusters": len(set(clusters[rows].tolist())),
                           "metrics": {}, "ci95": {}}  # fmt: skip
    statistics = [_statistic(score) for score in keys.values()]
    cis = cluster_bootstrap_many([(x[rows], reduce) for x, reduce in statistics], clusters[rows], n_resamples, 0.05, seed)
    for (key, score), (_, low, high) in zip(keys.items(), cis):
        out["metrics"][key] = value_of(score, rows)
        out["ci95"][key] = [low, high]
    return out


def summarize_condition(
    samples: Sequence[AnswerSample],
    metrics: Sequence[str],
    options: Mapping[str, Any] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``samples`` with ``metrics`` and summarise them the way results.json reports a condition.

    Returns::

        {"metrics": {key: value}, "ci95": {key: [low, high]},  # 95 % CI, patients resampled
         "num_samples": n, "clusters": number of patients,
         "per_type": {question type: {"num_samples", "clusters", "metrics", "ci95"}},  # if any is typed
         "per_topic": {topic: {...}},                                                 # if any has a topic
         "per_sample": [{key: score} for each sample]}  # the per-sample keys (not corpus BLEU)

    A group is resampled by its own patients; samples without a type (when others have one) form
    the group ``(none)``. ``options`` are the metrics' options (``metrics.metric_options``).
    """
    scored = score_samples(metrics, samples, options)
    keys: dict[str, np.ndarray | CorpusScore] = {}
    for name, scores in scored.items():
        for key, score in scores.items():
            if key in keys:
                raise ValueError(f"metric {name!r} returns key {key!r}, already returned by another metric of {list(scored)}")
            keys[key] = score
    clusters = np.asarray(cluster_ids(samples), dtype=object)
    everything = np.arange(len(samples))
    out = _block(keys, clusters, everything, n_resamples, seed)
    for result_key, field_name in GROUPS.items():
        labels = [getattr(s, field_name) for s in samples]
        if all(label is None for label in labels):
            continue
        names = np.array([UNTYPED if label is None else str(label) for label in labels], dtype=object)
        out[result_key] = {g: _block(keys, clusters, np.flatnonzero(names == g), n_resamples, seed) for g in sorted(set(names))}
    per_sample = {k: np.asarray(v, dtype=float) for k, v in keys.items() if not isinstance(v, CorpusScore)}
    out["per_sample"] = [{k: float(v[i]) for k, v in per_sample.items()} for i in range(len(samples))]
    return out


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


def format_table(rows: Mapping[str, Mapping[str, float]], metrics: Sequence[str], first: str = "condition") -> str:
    """Plain-text table: one row per condition (e.g. real, zeros, no_signal), one column per metric.

    Values are 0-1 scores printed as percentages with one decimal (``0.4567`` -> ``45.7``); a value may
    also be a ``summarize_runs`` entry, printed as ``mean [ci_low, ci_high]``; a missing one is ``-``.
    Columns are right-aligned; the first column (headed ``first``) holds the row names.
    """
    header = [first, *metrics]
    body = [[name, *(_cell(vals.get(m)) for m in metrics)] for name, vals in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def _with_ci(block: Mapping[str, Any]) -> dict[str, Any]:
    """A condition (or group) block of results.json as table cells: value, with its CI when it has one."""
    ci = block.get("ci95", {})
    return {k: {"mean": v, "ci_low": ci[k][0], "ci_high": ci[k][1]} if k in ci else v for k, v in block["metrics"].items()}


def _label(name: str, block: Mapping[str, Any]) -> str:
    n, patients = block.get("num_samples"), block.get("clusters")
    if n is None:
        return name
    return f"{name} (n={n}" + (f", {patients} patients)" if patients is not None else ")")


def results_tables(conditions: Mapping[str, Mapping[str, Any]]) -> str:
    """The tables of an evaluation's conditions (results.json ``conditions``), values in percent with
    their 95 % CI: one row per condition, then one table per grouping (question type, topic) with a
    row per group and condition. A value without a CI (not defined, e.g. one patient) prints alone."""
    if not conditions:
        return "(no conditions)"
    metrics = list(dict.fromkeys(k for c in conditions.values() for k in c["metrics"]))
    parts = [format_table({_label(c, r): _with_ci(r) for c, r in conditions.items()}, metrics)]
    for result_key, field_name in GROUPS.items():
        groups = list(dict.fromkeys(g for r in conditions.values() for g in r.get(result_key, {})))
        rows = {_label(f"{g} / {c}", r[result_key][g]): _with_ci(r[result_key][g])
                for g in groups for c, r in conditions.items() if g in r.get(result_key, {})}  # fmt: skip
        if rows:  # a group's conditions side by side: does the answer depend on the ECG for this type?
            parts.append(format_table(rows, metrics, first=f"{field_name} / condition"))
    return "\n\n".join(parts)
