"""``ecg-bench report RUN...``: the benchmark report over finished runs (folds x seeds x configurations).

``write_report(runs, out, options)`` (also called at the end of a sweep) reads every results.json,
groups the runs into configurations (``runs.group_runs``: same config but fold and seed), and writes
into the report folder ``out`` (made by ecg-bench, marked ``report``; replaced as a whole)::

    index.html                  every table and figure, self-contained (figures as base64 PNG)
    report.md                   the tables in markdown
    tables/<name>.{md,csv,tex}  configurations, summary, per_question_type, per_topic, comparisons, signal_audit
    figures/*.png               scores, per_question_type, per_topic, training_loss, example_<n>

The numbers (``analysis``): per configuration mean ± sd and 95 % t-interval over runs, per condition,
metric, question type and topic; paired comparisons between configurations on the same items (patient-
clustered bootstrap CI, McNemar, Holm); the signal-dependence audit (real - zeros / shuffled /
no_signal with patient-clustered CIs, "does not use the ECG" when the interval covers 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench import folders
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.evaluation.report import analysis, figures, tables
from ecg_bench.evaluation.report.html import render
from ecg_bench.evaluation.report.runs import Configuration, Run, find_results, group_runs, load_run
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

__all__ = ["ReportOptions", "Report", "write_report"]


@dataclass
class ReportOptions:
    """What the report shows and how its intervals are computed."""

    metric: str = "acc_normalized"
    """Metric key of the figures, the per-question-type table, the comparisons table and the signal audit (a
    per-sample key of results.json samples, e.g. acc_normalized, acc_exact, acc_answer_set, rouge1)."""
    compare_conditions: list[str] = field(default_factory=lambda: ["real"])
    """Conditions under which configurations are compared pairwise (each a family for Holm's correction)."""
    bootstrap_resamples: int = 1000
    """Resamples of every paired patient-clustered bootstrap (in [100, 1000000])."""
    seed: int = 0
    """Seed of the bootstraps (the same runs give the same report)."""
    confidence: float = 0.95
    """Level of the Student-t interval over runs (folds x seeds), in (0, 1)."""
    examples: int = 3
    """Test items drawn as 12-lead ECG with question, reference and predictions (0 = none, at most 20)."""
    ignore: list[str] = field(default_factory=list)
    """More flattened config keys (e.g. data.max_eval_items) that do not split runs into configurations, besides
    the fold, the training seed and the settings that only say where or how fast a run works."""

    def __post_init__(self) -> None:
        p = []
        if not self.metric:
            p.append("report.metric must name a metric key (e.g. acc_normalized)")
        if not self.compare_conditions:
            p.append("report.compare_conditions must name at least one condition (e.g. real)")
        if not 100 <= self.bootstrap_resamples <= 1_000_000:
            p.append(f"report.bootstrap_resamples must be in [100, 1000000] (1000 is usual), got {self.bootstrap_resamples}")
        if not 0 <= self.seed < 2**63:
            p.append(f"report.seed must be in [0, 2**63), got {self.seed}")
        if not 0.0 < self.confidence < 1.0:
            p.append(f"report.confidence must be in (0, 1) (0.95 is usual), got {self.confidence}")
        if not 0 <= self.examples <= 20:
            p.append(f"report.examples must be in [0, 20], got {self.examples}")
        if p:
            raise ConfigError(p)


@dataclass
class Report:
    """What ``write_report`` wrote."""

    folder: Path
    configurations: list[Configuration]
    tables: dict[str, tables.Table]
    figures: list[Path]


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    files = find_results(paths)
    runs = [load_run(f) for f in files]
    log.info("report: %d finished runs", len(runs))
    return runs


def check_metric(configs: Sequence[Configuration], metric: str) -> None:
    """ConfigError before any work when ``metric`` is not a per-sample key of the runs, listing the ones there."""
    keys = analysis.sample_keys(configs)
    if not keys:  # results.json without per-sample scores: the summary only
        log.warning("report: no run records per-sample scores (results.json samples); no comparisons, audit or examples")
        return
    if metric not in keys:
        everything = analysis.metric_keys(configs)
        why = "a corpus-level score (items cannot be paired on it)" if metric in everything else "not in these runs"
        raise ConfigError([f"report.metric {metric!r}: {why}; choose one of the per-sample keys: {', '.join(keys) or '(none)'}"])


def write_report(runs: Sequence[str | Path], out: str | Path, options: ReportOptions | None = None) -> Report:
    """Read the runs (folders holding results.json, or folders searched for them), write the report into ``out``."""
    options = options or ReportOptions()
    out = Path(out)
    folders.check_replaceable(out, "report")  # refused before any work
    loaded = load_runs(runs)
    if not loaded:
        raise DataError(f"no finished runs in {', '.join(map(str, runs))}")
    configs = group_runs(loaded, options.ignore)
    check_metric(configs, options.metric)
    tmp = folders.make_temp(out, "report")
    try:
        made = _write(configs, tmp, options)
        folders.replace(tmp, out, "report")
    except BaseException:
        folders.remove(tmp, "report", ignore_errors=True)
        raise
    log.info("report: %d configurations, %d tables, %d figures -> %s", len(configs), len(made[0]), len(made[1]),
             out / "index.html")  # fmt: skip
    return Report(out, configs, made[0], [out / p.relative_to(tmp) for p in made[1]])


def _write(configs: list[Configuration], root: Path, o: ReportOptions) -> tuple[dict[str, tables.Table], list[Path]]:
    metrics = analysis.metric_keys(configs)
    conditions = list(dict.fromkeys(c for cfg in configs for c in cfg.conditions))
    summary = analysis.summary_records(configs, o.confidence)
    per_sample = analysis.sample_keys(configs)
    compare = [c for c in o.compare_conditions if c in conditions]
    if len(compare) < len(o.compare_conditions):
        log.warning("report: no run evaluated %s; compared under %s", sorted(set(o.compare_conditions) - set(compare)), compare)
    comparisons = analysis.comparison_records(configs, compare, per_sample, o.bootstrap_resamples, o.seed)
    audit = analysis.audit_records(configs, o.metric, o.bootstrap_resamples, o.seed)
    made = [tables.configurations_table(configs), tables.summary_table(summary, metrics),
            *(tables.per_group_table(summary, o.metric, conditions, g) for g in analysis.GROUPINGS),
            tables.comparisons_table(comparisons, o.metric),
            tables.audit_table(audit, o.metric)]  # fmt: skip
    made = [t for t in made if t.rows or t.name in ("configurations", "summary")]
    for t in made:
        t.write(root / "tables")
    (root / "report.md").write_text("\n".join(t.markdown() for t in made))

    names = [c.name for c in configs]
    figs: list[tuple[Path, str]] = []
    fig_dir = root / "figures"
    figs.append((figures.scores_figure(summary, o.metric, names, conditions, fig_dir / "scores.png"),
                 f"{o.metric} per configuration and condition; error bars: 95 % t-interval over runs "
                 "(one run: its patient-clustered bootstrap CI)"))  # fmt: skip
    heat_condition = "real" if "real" in conditions else conditions[0]
    for group_by in analysis.GROUPINGS:
        heat = figures.group_heatmap(summary, o.metric, names, heat_condition, fig_dir / f"per_{group_by}.png", group_by)
        if heat:
            what = group_by.replace("_", " ")
            figs.append((heat, f"{o.metric} per {what} and configuration, mean over runs ({heat_condition})"))
    loss = figures.loss_figure(configs, fig_dir / "training_loss.png")
    if loss:
        figs.append((loss, "training loss per step (metrics.jsonl, or the final checkpoint's loss history)"))
    else:
        log.info("report: no run has a loss history (metrics.jsonl or trainer_state.json); no loss figure")
    examples = _examples(configs, o.examples, fig_dir)
    intro = [f"{sum(len(c.runs) for c in configs)} runs in {len(configs)} configurations; metric of the figures, "
             f"comparisons and audit: {o.metric}. Tables also as markdown, CSV and LaTeX (booktabs) in tables/."]  # fmt: skip
    flagged: dict[str, list[str]] = {}
    for r in audit:
        if r["verdict"] == analysis.DOES_NOT_USE:
            flagged.setdefault(r["configuration"], []).append(r["comparison"])
    if flagged:
        shown = "; ".join(f"{c} ({', '.join(v)})" for c, v in flagged.items())
        intro.append(f"Does not use the ECG (the audit interval of {o.metric} covers 0): {shown}.")
    sections = [made[0], *figs, *made[1:], *examples]
    (root / "index.html").write_text(render("ECG-Bench report", intro, sections, root))
    return {t.name: t for t in made}, [p for p, _ in figs + examples]


def _examples(configs: list[Configuration], k: int, fig_dir: Path) -> list[tuple[Path, str]]:
    """Up to ``k`` test items of the first configuration's first run, each with every configuration's predictions
    (its first run on the same fold) under every condition."""
    from ecg_bench.data.store import SegmentStore

    if k == 0:
        return []
    first = configs[0].by_fold()
    run = next(iter(first.values()))[0]
    recorded = (run.results.get("data") or {}).get("store")
    store_path = run.locate(recorded)
    condition = "real" if "real" in run.conditions else next(iter(run.conditions))
    items = [s for s in run.samples(condition) if s.get("turn", 0) == 0 and s.get("segment_ids")][:k]
    if not items:
        log.info("report: %s records no segment_ids for its first samples; no example figures", run.path)
        return []
    if store_path is None:
        log.warning("report: the store of %s (%s) is not found; no example figures", run.path, recorded)
        return []
    try:
        store = SegmentStore(store_path)
    except (FileNotFoundError, DataError) as e:
        log.warning("report: the store of %s cannot be read (%s); no example figures", run.path, e)
        return []
    out = []
    for n, s in enumerate(items, 1):
        preds = []
        for c in configs:
            same = c.by_fold().get(run.fold)
            if not same:
                continue
            for cond in same[0].conditions:
                got = next((x for x in same[0].samples(cond) if x["id"] == s["id"] and x.get("turn", 0) == 0), None)
                if got is not None:
                    preds.append((f"{c.name} / {cond}" if len(configs) > 1 else cond, str(got.get("prediction", ""))))
        title = f"test item {s['id']} (patient {s.get('patient_id', '?')}, fold {run.fold}, {s.get('question_type') or '-'})"
        path = figures.example_figure(store.signal(int(s["segment_ids"][0])), store.fs, s.get("question", ""),
                                      s.get("reference", ""), preds, title, fig_dir / f"example_{n}.png")  # fmt: skip
        out.append((path, f"test item {s['id']}: its ECG (first segment), question, reference and each prediction"))
    return out


def default_out(runs: Sequence[str]) -> Path:
    """RUN/report when the one RUN given is a folder of runs (a sweep), else ./report."""
    if len(runs) == 1 and Path(runs[0]).is_dir() and not (Path(runs[0]) / "results.json").is_file():
        return Path(runs[0]) / "report"
    return Path("report")
