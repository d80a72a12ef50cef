"""Report tables: built from the analysis records, written as markdown, CSV and LaTeX (booktabs).

A ``Table`` holds display cells (percent, rounded: markdown, LaTeX, HTML) and its records (numbers
unrounded, one per row: CSV). LaTeX comes from pandas' ``DataFrame.to_latex`` (booktabs rules,
escaping of ``_ & % #``), CSV from ``DataFrame.to_csv``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ecg_bench.evaluation.report.analysis import ALL
from ecg_bench.evaluation.report.runs import Configuration


@dataclass
class Table:
    name: str
    """File stem (``summary`` -> summary.md, summary.csv, summary.tex)."""
    title: str
    columns: list[str]
    rows: list[list[str]]
    records: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(md_text(c).replace("|", "\\|") for c in cells) + " |"

        align = ["---"] + ["---:" if _numeric(self.rows, i) else "---" for i in range(1, len(self.columns))]
        body = [f"### {md_text(self.title)}", "", line(self.columns), "| " + " | ".join(align) + " |", *map(line, self.rows)]
        return "\n".join(body + ([f"\n{md_text(self.note, one_line=False)}"] if self.note else [])) + "\n"

    def latex(self) -> str:
        df = pd.DataFrame(self.rows, columns=self.columns)
        fmt = "".join("r" if _numeric(self.rows, i) and i else "l" for i in range(len(self.columns)))
        tex = df.to_latex(index=False, escape=True, column_format=fmt, caption=_tex_escape(self.title), label=f"tab:{self.name}")
        return tex.replace("±", r"$\pm$")

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in self.rows)
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        return f'<table id="{self.name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}'

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{self.name}.{ext}" for ext in ("md", "csv", "tex")]
        paths[0].write_text(self.markdown())
        pd.DataFrame(self.records or [dict(zip(self.columns, r)) for r in self.rows]).to_csv(paths[1], index=False)
        paths[2].write_text(self.latex())
        return paths


_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def md_text(value: Any, one_line: bool = True) -> str:
    """A value as markdown text: every ``<`` that would open an HTML tag or comment escaped, so a config value
    ``<img src=x onerror=...>`` stays text where the markdown is rendered (``p < 0.05`` and ``<0.001`` stay as they
    are); with ``one_line``, line breaks (which would end a table row) become spaces."""
    text = _TAG.sub("&lt;", str(value))
    return " ".join(text.splitlines()) if one_line else text


def _numeric(rows: Sequence[Sequence[str]], i: int) -> bool:
    cells = [str(r[i]) for r in rows if str(r[i]) not in ("", "-")]
    return bool(cells) and all(c.lstrip("+-−")[:1].isdigit() for c in cells)


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def pct(x: float | None, digits: int = 1, sign: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.{digits}f}" if sign else f"{100 * x:.{digits}f}"


def _cell(r: dict[str, Any]) -> str:
    """``mean ± sd [low, high]`` in percent; a single run: ``value [low, high]*`` (its patient bootstrap CI)."""
    if r["runs"] == 1:
        star = "*" if r["ci"].startswith("patient") else ""
        return f"{pct(r['mean'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]{star}"
    return f"{pct(r['mean'])} ± {pct(r['sd'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"


SUMMARY_NOTE = ("Values in %: mean ± sd over runs (folds x seeds) [95 % Student-t interval]; * one run: "
                "the run's value [95 % CI, bootstrap resampling patients].")  # fmt: skip


def configurations_table(configs: Sequence[Configuration]) -> Table:
    rows, records = [], []
    for c in configs:
        folds = sorted({str(r.fold) for r in c.runs})
        seeds = sorted({str(r.seed) for r in c.runs})
        settings = ", ".join(f"{k}={v}" for k, v in c.settings.items()) or "-"
        rows.append([c.name, str(len(c.runs)), " ".join(folds), " ".join(seeds), settings])
        records.extend({"configuration": c.name, "fold": r.fold, "seed": r.seed, "run": str(r.path), **c.settings}
                       for r in c.runs)  # fmt: skip
    return Table("configurations", "Configurations (runs grouped by everything but fold and seed)",
                 ["configuration", "runs", "folds", "seeds", "settings"], rows, records)  # fmt: skip


def summary_table(records: list[dict[str, Any]], metrics: Sequence[str]) -> Table:
    """One row per configuration and condition, one column per metric (every question)."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    runs: dict[tuple[str, str], int] = {}
    for r in records:
        if r["group_by"] == ALL:
            cells.setdefault((r["configuration"], r["condition"]), {})[r["metric"]] = _cell(r)
            runs[(r["configuration"], r["condition"])] = r["runs"]
    rows = [[cfg, cond, str(runs[(cfg, cond)]), *(v.get(m, "-") for m in metrics)] for (cfg, cond), v in cells.items()]
    return Table("summary", "Scores per configuration and condition", ["configuration", "condition", "runs", *metrics],
                 rows, [r for r in records if r["group_by"] == ALL], SUMMARY_NOTE)  # fmt: skip


def per_group_table(records: list[dict[str, Any]], metric: str, conditions: Sequence[str], group_by: str) -> Table:
    """One row per configuration and group (question type or topic), one column per condition, for ``metric``."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in records:
        if r["group_by"] == group_by and r["metric"] == metric:
            cells.setdefault((r["configuration"], r["group"]), {})[r["condition"]] = _cell(r)
    rows = [[cfg, g, *(v.get(c, "-") for c in conditions)] for (cfg, g), v in cells.items()]
    what = group_by.replace("_", " ")
    return Table(f"per_{group_by}", f"{metric} per {what}", ["configuration", what, *conditions], rows,
                 [r for r in records if r["group_by"] == group_by], SUMMARY_NOTE)  # fmt: skip


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def comparisons_table(records: list[dict[str, Any]], metric: str) -> Table:
    rows = [[r["a"], r["b"], r["condition"], str(r["pairs"]), str(r["patients"]), pct(r["mean_a"]), pct(r["mean_b"]),
             f"{pct(r['diff'], sign=True)} [{pct(r['ci_low'], sign=True)}, {pct(r['ci_high'], sign=True)}]",
             r["test"], _p(r["p"]), _p(r["p_holm"]), r["verdict"]] for r in records if r["metric"] == metric]  # fmt: skip
    note = (f"{metric} in %, a - b on the test items both answered (same fold, item and turn; runs paired by seed); "
            "CI: paired bootstrap resampling patients; p: McNemar (exact binomial below 25 discordant pairs) for 0/1 "
            "scores, else bootstrap; Holm-adjusted over the pairs of each condition and metric. A difference is called "
            "when the CI excludes 0 and the Holm p < 0.05.")  # fmt: skip
    return Table("comparisons", f"Paired comparisons between configurations ({metric})",
                 ["a", "b", "condition", "pairs", "patients", "a %", "b %", "a - b [95 % CI]", "test", "p", "p Holm",
                  "verdict"], rows, records, note)  # fmt: skip


def audit_table(records: list[dict[str, Any]], metric: str) -> Table:
    rows = [[r["configuration"], r["comparison"], str(r["pairs"]), str(r["patients"]),
             f"{pct(r['diff'], sign=True)} [{pct(r['ci_low'], sign=True)}, {pct(r['ci_high'], sign=True)}]",
             r["test"], _p(r["p"]), r["verdict"]] for r in records]  # fmt: skip
    note = (f"{metric} in %, real minus the condition on the same items of the same runs, pooled over folds and seeds; "
            "95 % CI from a paired bootstrap resampling patients. 'does not use the ECG': the interval covers 0.")
    return Table("signal_audit", f"Signal-dependence audit ({metric})",
                 ["configuration", "comparison", "pairs", "patients", "difference [95 % CI]", "test", "p", "verdict"],
                 rows, records, note)  # fmt: skip
