"""The numbers of the report, as records (one dict per table row, numbers unrounded).

* ``summary_records``: per configuration, condition, group (every question, each question type, each
  topic) and metric, mean, sd and the 95 % Student-t interval over the configuration's runs (folds x seeds);
* ``comparison_records``: per pair of configurations, condition and per-sample metric, the paired
  difference on the test items both answered (same fold, same item and turn; runs paired by seed),
  its patient-clustered bootstrap CI, McNemar's test for 0/1 metrics, and Holm-adjusted p-values over
  every pair of the same condition and metric;
* ``audit_records``: per configuration, real minus each signal-free condition (zeros, shuffled,
  no_signal) on the same items, patient-clustered CI, flagged "does not use the ECG" when it covers 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ecg_bench.evaluation.comparisons import holm, mcnemar, paired_difference, t_interval
from ecg_bench.evaluation.conditions import CONDITIONS
from ecg_bench.evaluation.report.runs import Configuration, Run
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

ALL = "all"
"""The question-type value of a row over every question."""
USES, DOES_NOT_USE, WORSE = "uses the ECG", "does not use the ECG", "scores lower with the real ECG"


def metric_keys(configs: Sequence[Configuration]) -> list[str]:
    """Every metric key of any condition of any run, in order of appearance."""
    return list(dict.fromkeys(k for c in configs for r in c.runs for cond in r.conditions.values() for k in cond["metrics"]))


def sample_keys(configs: Sequence[Configuration]) -> list[str]:
    """Metric keys scored per sample (in results.json ``samples``; not corpus BLEU): the ones items are paired on."""
    present = {k for c in configs for r in c.runs for s in r.results.get("samples", [])[:1] for k in s}
    return [k for k in metric_keys(configs) if k in present]


GROUPINGS = {"question_type": "per_type", "topic": "per_topic"}
"""Record ``group_by`` -> the results.json block of a condition that holds its groups."""


def _block_value(run: Run, condition: str, group_by: str, group: str, metric: str) -> tuple[float, list[float] | None] | None:
    cond = run.conditions.get(condition)
    if cond is None:
        return None
    block = cond if group_by == ALL else cond.get(GROUPINGS[group_by], {}).get(group)
    if not block or metric not in block.get("metrics", {}):
        return None
    return float(block["metrics"][metric]), block.get("ci95", {}).get(metric)


def groups(config: Configuration) -> list[tuple[str, str]]:
    """``(group_by, group)`` of the configuration's rows: ("all", "all"), then each question type, each topic."""
    out = [(ALL, ALL)]
    for group_by, key in GROUPINGS.items():
        out += [(group_by, g) for g in sorted({g for r in config.runs for c in r.conditions.values() for g in c.get(key, {})})]
    return out


def summary_records(configs: Sequence[Configuration], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Mean, sd and t-interval over runs of every (configuration, condition, group, metric); a group is every
    question (group_by "all"), a question type or a topic."""
    out = []
    metrics = metric_keys(configs)
    for c in configs:
        for condition, (group_by, group), metric in itertools.product(c.conditions, groups(c), metrics):
            got = [v for v in (_block_value(r, condition, group_by, group, metric) for r in c.runs) if v is not None]
            if not got:
                continue
            s = t_interval([v for v, _ in got], confidence)
            row = {"configuration": c.name, "condition": condition, "group_by": group_by, "group": group, "metric": metric,
                   "runs": s["n"], "mean": s["mean"], "sd": s["std"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                   "ci": "t over runs"}  # fmt: skip
            if s["n"] == 1 and got[0][1]:  # one run: its own patient-clustered bootstrap CI
                row.update(ci_low=float(got[0][1][0]), ci_high=float(got[0][1][1]), ci="patient bootstrap (1 run)")
            out.append(row)
    return out


def _paired_rows(
    pairs: Sequence[tuple[Run, str, Run, str]], metric: str
) -> tuple[np.ndarray, np.ndarray, list[str], set[Any]]:
    """Scores of ``metric`` on the items both sides answered: (a, b, patients, folds) over every pair of runs."""
    a: list[float] = []
    b: list[float] = []
    patients: list[str] = []
    folds = set()
    for run_a, cond_a, run_b, cond_b in pairs:
        right = {(s["id"], s.get("turn", 0)): s for s in run_b.samples(cond_b) if metric in s}
        for s in run_a.samples(cond_a):
            other = right.get((s["id"], s.get("turn", 0)))
            if other is None or metric not in s:
                continue
            a.append(float(s[metric]))
            b.append(float(other[metric]))
            patients.append(str(s.get("patient_id") or f"{s['id']}"))
            folds.add(run_a.fold)
    return np.asarray(a), np.asarray(b), patients, folds


def run_pairs(ca: Configuration, cb: Configuration) -> list[tuple[Run, Run]]:
    """Runs of two configurations on the same fold, paired by seed (by order when no seed is shared)."""
    out = []
    fa, fb = ca.by_fold(), cb.by_fold()
    for fold in [f for f in fa if f in fb]:
        seeds_b = {r.seed: r for r in fb[fold]}
        shared = [(r, seeds_b[r.seed]) for r in fa[fold] if r.seed in seeds_b]
        out.extend(shared or list(zip(fa[fold], fb[fold])))
    return out


def _is_binary(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())


def _difference(a: np.ndarray, b: np.ndarray, patients: list[str], n_resamples: int, seed: int) -> dict[str, Any]:
    d = paired_difference(a, b, patients, n_resamples=n_resamples, seed=seed)
    row = {"pairs": d.n, "patients": d.clusters, "mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": d.mean,
           "ci_low": d.low, "ci_high": d.high, "p_bootstrap": d.p_bootstrap}  # fmt: skip
    if _is_binary(a, b):
        m = mcnemar(a, b)
        row.update(test="McNemar exact" if m.exact else "McNemar chi2", a_only=m.b, b_only=m.c, p=m.p_value)
    else:
        row.update(test="bootstrap", a_only=None, b_only=None, p=d.p_bootstrap)
    return row


def comparison_records(
    configs: Sequence[Configuration], conditions: Sequence[str], metrics: Sequence[str], n_resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """Every pair of configurations, per condition and metric (see the module doc); ``p_holm`` within each
    (condition, metric) family."""
    out = []
    for condition, metric in itertools.product(conditions, metrics):
        family = []
        for ca, cb in itertools.combinations(configs, 2):
            pairs = [(ra, condition, rb, condition) for ra, rb in run_pairs(ca, cb)]
            a, b, patients, folds = _paired_rows(pairs, metric)
            if not a.size:
                log.info("report: %s and %s share no test items under %s (other folds or items); not compared",
                         ca.name, cb.name, condition)  # fmt: skip
                continue
            row = {"condition": condition, "metric": metric, "a": ca.name, "b": cb.name, "folds": len(folds),
                   **_difference(a, b, patients, n_resamples, seed)}  # fmt: skip
            family.append(row)
        for row, p in zip(family, holm([r["p"] for r in family]) if family else []):
            row["p_holm"] = p
            row["verdict"] = _verdict(row, "a better", "b better", "no difference shown")
        out.extend(family)
    return out


def _verdict(row: dict[str, Any], above: str, below: str, covers: str, p_key: str = "p_holm") -> str:
    """A difference is called only when the clustered CI excludes 0 and (if any) the adjusted p < 0.05; never when
    any of them is not a number."""
    numbers = [row["diff"], row["ci_low"], row["ci_high"], row.get(p_key, 0.0)]
    if not all(isinstance(x, int | float) and np.isfinite(x) for x in numbers):
        return covers
    if row["ci_low"] <= 0.0 <= row["ci_high"] or row.get(p_key, 0.0) >= 0.05:
        return covers
    return above if row["diff"] > 0 else below


def audit_records(configs: Sequence[Configuration], metric: str, n_resamples: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Real minus each condition that takes the ECG away (``Condition.ablation``; where evaluated), per configuration,
    on the same items."""
    out = []
    for c in configs:
        for condition in [x for x in c.conditions if x in CONDITIONS and CONDITIONS.get(x).ablation]:
            pairs = [(r, "real", r, condition) for r in c.runs if "real" in r.conditions and condition in r.conditions]
            a, b, patients, folds = _paired_rows(pairs, metric)
            if not a.size:
                continue
            row = {"configuration": c.name, "comparison": f"real - {condition}", "metric": metric, "runs": len(pairs),
                   **_difference(a, b, patients, n_resamples, seed)}  # fmt: skip
            finite = all(np.isfinite(row[k]) for k in ("diff", "ci_low", "ci_high"))
            covers = not finite or row["ci_low"] <= 0.0 <= row["ci_high"]
            row["verdict"] = DOES_NOT_USE if covers else USES if row["diff"] > 0 else WORSE
            out.append(row)
    return out
