"""Report figures (PNG), drawn with matplotlib's object API on the Agg canvas.

``matplotlib.figure.Figure`` + ``savefig`` never touch pyplot's global state or backend, so a report
drawn inside another program (a notebook, a sweep) changes nothing there.

* ``scores_figure``: the primary metric per configuration and condition, CI error bars;
* ``group_heatmap``: the primary metric per question type (or topic) x configuration (real ECG);
* ``loss_figure``: training loss per step of every run (``metrics.jsonl`` in the run folder when there,
  else the loss history of the final checkpoint's trainer_state.json); None when no run has one;
* ``example_figure``: one test item's 12-lead ECG with its question, reference and predictions.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ecg_bench.data.record import LEADS
from ecg_bench.evaluation.report.analysis import ALL
from ecg_bench.evaluation.report.runs import Configuration, Run
from ecg_bench.logging_utils import get_logger
from ecg_bench.safe_files import read_json_file

log = get_logger(__name__)

DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _plain(text: str) -> str:
    """Text shown as typed: ``$`` would start matplotlib's math mode."""
    return str(text).replace("$", r"\$")


def scores_figure(records: list[dict[str, Any]], metric: str, configs: Sequence[str], conditions: Sequence[str], path: Path) -> Path:
    rows = {(r["configuration"], r["condition"]): r for r in records if r["group_by"] == ALL and r["metric"] == metric}
    fig = Figure(figsize=(max(5.0, 1.2 + 1.1 * len(configs) * max(1, len(conditions)) * 0.45), 3.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(conditions))
    x = np.arange(len(configs))
    for j, cond in enumerate(conditions):
        got = [rows.get((c, cond)) for c in configs]
        mean = np.array([100 * r["mean"] if r else np.nan for r in got])
        # a t-interval over 2-3 runs can reach past 0 or 100 %; drawn clipped to the scale (the tables give it whole)
        low = np.array([100 * (r["mean"] - max(0.0, r["ci_low"])) if r else 0 for r in got])
        high = np.array([100 * (min(1.0, r["ci_high"]) - r["mean"]) if r else 0 for r in got])
        ax.bar(x + (j - (len(conditions) - 1) / 2) * width, mean, width, yerr=[low, high], capsize=3, label=cond)
    ax.set_xticks(x, [textwrap.fill(_plain(c), 22) for c in configs], fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{metric} per configuration and condition (95 % CI)")
    ax.legend(fontsize=8, title="condition", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def group_heatmap(records: list[dict[str, Any]], metric: str, configs: Sequence[str], condition: str, path: Path,
                  group_by: str = "question_type") -> Path | None:  # fmt: skip
    rows = [r for r in records if r["group_by"] == group_by and r["metric"] == metric and r["condition"] == condition]
    types = sorted({r["group"] for r in rows})
    if not types:
        return None
    values = np.full((len(types), len(configs)), np.nan)
    for r in rows:
        if r["configuration"] in configs:
            values[types.index(r["group"]), list(configs).index(r["configuration"])] = 100 * r["mean"]
    fig = Figure(figsize=(max(4.5, 1.5 + 1.3 * len(configs)), max(2.5, 0.9 + 0.45 * len(types))))
    ax = fig.subplots()
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(configs)), [textwrap.fill(_plain(c), 18) for c in configs], fontsize=8)
    ax.set_yticks(range(len(types)), [_plain(t) for t in types], fontsize=8)
    ax.set_title(f"{metric} (%) per {group_by.replace('_', ' ')}, condition {condition}")
    fig.colorbar(im, ax=ax, fraction=0.05)
    return _save(fig, path)


def loss_history(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, losses) of a run: its metrics.jsonl (rows with step and loss), else its final checkpoint's
    trainer_state.json loss list (one per step); None when neither is there."""
    f = run.path / "metrics.jsonl"
    if f.is_file():
        steps, losses = [], []
        for line in f.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed run
            if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)) and isinstance(row.get("step"), (int, float)):
                steps.append(row["step"])
                losses.append(row["loss"])
        if losses:
            return np.asarray(steps, float), np.asarray(losses, float)
    ck = run.locate((run.results.get("training") or {}).get("checkpoint"))
    state = ck / "trainer_state.json" if ck else None
    if state is not None and state.is_file():
        try:
            losses = read_json_file(state, "trainer state (JSON object)").get("losses") or []
        except (OSError, ValueError, AttributeError):
            losses = []
        if losses:
            return np.arange(1, len(losses) + 1, dtype=float), np.asarray(losses, float)
    return None


def loss_figure(configs: Sequence[Configuration], path: Path) -> Path | None:
    curves = [(i, c, r, loss_history(r)) for i, c in enumerate(configs) for r in c.runs]
    curves = [x for x in curves if x[3] is not None]
    if not curves:
        return None
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    labelled: set[int] = set()
    for i, c, _, (steps, losses) in curves:  # type: ignore[misc]
        color = f"C{i % 10}"
        window = max(1, len(losses) // 50)  # a running mean keeps long curves readable
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color=color, alpha=0.8, lw=1, label=None if i in labelled else _plain(c.name))
        labelled.add(i)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (one line per run)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def example_figure(signal: np.ndarray, fs: float, question: str, reference: str,
                   predictions: Sequence[tuple[str, str]], title: str, path: Path) -> Path:  # fmt: skip
    """The 12 leads of ``signal`` [12, L] (mV) in a 6 x 2 grid, then the question, reference and every
    ``(who, prediction)``."""
    head = 0.4 + 0.16 * (2 + len(predictions))  # inches for the title and the text lines (8 pt)
    fig = Figure(figsize=(10, 6.0 + head))
    top = 1 - head / (6.0 + head)
    axes = fig.subplots(6, 2, sharex=True, gridspec_kw={"top": top, "hspace": 0.15, "wspace": 0.08})
    t = np.arange(signal.shape[1]) / fs
    for k in range(min(12, signal.shape[0])):
        ax = axes[k % 6, k // 6]
        ax.plot(t, signal[k], lw=0.7, color="black")
        ax.text(0.005, 0.8, LEADS[k] if k < len(LEADS) else str(k), transform=ax.transAxes, fontsize=8, weight="bold")
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("s", fontsize=7)
    lines = [f"Q: {question}", f"reference: {reference}", *(f"{who}: {pred or '(empty)'}" for who, pred in predictions)]
    text = "\n".join(textwrap.shorten(_plain(x), 150, placeholder=" ...") for x in lines)
    fig.suptitle(_plain(title), fontsize=10, y=1 - 0.05 / (6.0 + head), va="top")
    fig.text(0.01, 1 - 0.3 / (6.0 + head), text, fontsize=8, va="top", family="monospace")
    return _save(fig, path)
