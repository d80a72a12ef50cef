"""``ecg-bench sweep GRID.yaml``: a grid of run configurations, one run folder per cell, then the report.

A grid file::

    preset: default                # what base is layered over: default (RunConfig's defaults, as `ecg-bench run`)
                                   # or quickstart (the quickstart preset)
    base:                          # a run config (a mapping, or a recipe file's path relative to the grid file)
      data: {source: {type: synthetic, num_patients: 300}}
    axes:                          # dotted config key -> the values it takes; cells are their product
      model.encoder: [conv1d, {type: spectral, hidden: 64}]   # a component choice: a name or {type: NAME, ...}
      data.fold: [0, 1]
      train.seed: [0, 1]
    exclude:                       # partial assignments: a cell of the product matching one is dropped
      - {model.encoder: spectral, data.fold: 1}
    include:                       # partial assignments added as cells, crossed with the axes they do not name
      - {model.encoder: conv1d, train.ecg: none}             # (here: a text-only baseline per fold x seed)
    output_dir: runs/bench/quick   # the sweep folder (--output_dir overrides it)
    report: {examples: 2}          # ReportOptions of the report written at the end (optional)
    slurm: {partition: gpu, timeout_min: 240, gpus_per_node: 1}   # submitit parameters (--executor slurm)

Every cell's config is built with ``config.build`` (the base, then the cell's values, merged like a
``--config`` file under flags) and checked, with the registry checks of ``run``, before any cell runs:
one ConfigError lists every problem of every cell. A cell is the folder ``<output_dir>/<name>``, its
name made of its values (``encoder=spectral-hidden=64__fold=0__seed=1``: stable, filesystem-safe). Cells
sharing the data settings share one segment store (``<output_dir>/stores/<source>-<hash>``), unless the
config names a data.store_dir.

Resumable: a cell whose results.json parses and holds a run's results is skipped (its config.json must
match the cell's, else the sweep refuses); a cell whose results.json is broken (truncated, not a run's)
is run again in a fresh folder, the old one kept as ``<name>.invalid-<time>``; a cell killed midway
resumes from its newest checkpoint; a failed cell is recorded in ``sweep.json`` with its error and does
not stop the others; running the same command again redoes only the cells without results. A report
that cannot be written fails the sweep (exit 1).

Bounded: a grid of more than ``limits.MAX_SWEEP_CELLS`` cells is refused with its count and an
estimate of the work, counted from the axes before any cell is built (``--max_cells N`` raises it).

One writer per folder (``ecg_bench.run_lock``): the sweep holds its folder, and each cell's folder
while the cell's run writes it under that lock; a cell folder another process still writes (a run
left by a killed sweep) is refused, naming that process. A local cell dies with the sweep
(``ecg_bench.processes``). Cells run as ``python -m ecg_bench run --config <cell>/cell.json``: one after
another, N at a time (``--jobs N``, each with a share of the CPU threads and, with several GPUs, its own
GPU), or as jobs of submitit (``--executor slurm``; ``submitit_local`` runs them through submitit's
LocalExecutor on this machine). The report over the finished cells goes to ``<output_dir>/report``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecg_bench import folders, processes, run_lock
from ecg_bench.config import RunConfig, build, layered, read_config_file, to_dict
from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.limits import MAX_SWEEP_CELLS, SWEEP_CELLS_RISK
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

GRID_KEYS = ("preset", "base", "axes", "include", "exclude", "output_dir", "report", "slurm")
PRESETS = ("default", "quickstart")
EXECUTORS = ("local", "slurm", "submitit_local")
SWEEP_FILE = "sweep.json"
CELL_CONFIG = "cell.json"
CELL_LOG = "sweep_cell.log"
MAX_NAME = 140
"""Longest cell name kept as it is; a longer one is cut and given a hash of its values."""
IGNORED_CHANGES = ("train.resume_from",)
"""Config keys a finished cell's config.json may differ in from the cell's (a resumed cell records its checkpoint)."""


@dataclass
class Cell:
    """One run of the sweep: its values and its checked config (``config.output_dir`` is its folder)."""

    name: str
    """Folder name, made of the cell's values."""
    assignment: dict[str, Any]
    """Dotted config key -> the value this cell gives it (its axis values, and an include rule's other keys)."""
    config: RunConfig
    """The checked run config (base, then the assignment; output_dir the cell's folder)."""

    @property
    def folder(self) -> Path:
        return Path(self.config.output_dir)


@dataclass
class Grid:
    """A grid file, read and checked (``load_grid``)."""

    path: Path
    """The grid file."""
    base: RunConfig
    """The preset with the grid's base over it, checked."""
    axes: dict[str, list[Any]]
    """Dotted config key -> the values it takes."""
    include: list[dict[str, Any]]
    """Partial assignments added as cells (crossed with the axes they do not name)."""
    exclude: list[dict[str, Any]]
    """Partial assignments of axis values: the product's cells matching one are dropped."""
    output_dir: Path
    """The sweep folder (absolute): cells, stores, sweep.json, report."""
    report: dict[str, Any] = field(default_factory=dict)
    """ReportOptions fields of the report written at the end."""
    slurm: dict[str, Any] = field(default_factory=dict)
    """submitit parameters of --executor slurm (timeout_min, gpus_per_node, partition, ...)."""
    cells: list[Cell] = field(default_factory=list)
    """Every cell, in order: the product less the excluded, then the included."""


# ---------------------------------------------------------------- reading the grid


def _preset(name: str) -> RunConfig:
    if name == "quickstart":
        from ecg_bench.presets import quickstart

        return quickstart()
    return RunConfig()


def _rules(raw: Any, what: str, where: str, problems: list[str]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) and r for r in raw):
        problems.append(f"{where}: {what} must be a list of non-empty mappings (dotted key -> value), got {raw!r}")
        return []
    return [dict(r) for r in raw]


def load_grid(path: str | Path, output_dir: str = "", checks: Sequence[Callable[[Any], list[str]]] = (),
              max_cells: int = MAX_SWEEP_CELLS) -> Grid:  # fmt: skip
    """Read the grid file, build and check every cell's config; ConfigError lists every problem (no cell runs).
    A grid of more than ``max_cells`` cells is refused before any cell is built (``check_size``)."""
    path = Path(path)
    where = str(path)
    raw = read_config_file(path)
    problems: list[str] = []
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown}; a grid has {', '.join(GRID_KEYS)}")
    preset = raw.get("preset", "default")
    if preset not in PRESETS:
        problems.append(f"{where}: preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        preset = "default"
    axes = raw.get("axes") or {}
    if not isinstance(axes, Mapping) or not all(isinstance(v, list) and v for v in axes.values()):
        problems.append(f"{where}: axes must map dotted config keys to non-empty lists of values, got {axes!r}")
        axes = {}
    axes = {str(k): list(v) for k, v in axes.items()}
    include = _rules(raw.get("include"), "include", where, problems)
    exclude = _rules(raw.get("exclude"), "exclude", where, problems)
    for i, rule in enumerate(exclude):
        stray = sorted(set(rule) - set(axes))
        if stray:
            problems.append(f"{where}: exclude[{i}] names {stray}, not axes; an exclude rule matches axis values "
                            f"(axes: {', '.join(axes) or 'none'})")  # fmt: skip
    out = output_dir or raw.get("output_dir") or ""
    if not isinstance(out, str) or not out:
        problems.append(f"{where}: output_dir must name the sweep folder (or pass --output_dir), got {out!r}")
        out = "."
    report = raw.get("report") or {}
    slurm = raw.get("slurm") or {}
    for key, value in (("report", report), ("slurm", slurm)):
        if not isinstance(value, Mapping):
            problems.append(f"{where}: {key} must be a mapping, got {value!r}")
    if problems:
        raise ConfigError(problems)
    base = _base(raw.get("base"), path, preset, checks)
    grid = Grid(path, base, axes, include, exclude, Path(out).expanduser().resolve(), dict(report), dict(slurm))
    report_options(grid)  # a bad report option is refused before any cell runs
    check_size(grid, max_cells)
    grid.cells = _cells(grid, checks)
    return grid


def _base(base: Any, grid_path: Path, preset: str, checks: Sequence[Callable[[Any], list[str]]]) -> RunConfig:
    """The preset with the grid's base over it (a mapping, or a recipe file relative to the grid file)."""
    where = f"{grid_path}: base"
    if base is None:
        layers = []
    elif isinstance(base, str):
        file = Path(base) if Path(base).is_absolute() or Path(base).exists() else grid_path.parent / base
        try:
            layers = [(str(file), read_config_file(file))]
        except FileNotFoundError as e:
            raise ConfigError([f"{where}: {e}"]) from None
    elif isinstance(base, Mapping):
        layers = [(where, dict(base))]
    else:
        raise ConfigError([f"{where}: expected a run config mapping or a recipe file's path, got {base!r}"])
    cfg, problems = layered(_preset(preset), layers)
    if cfg is not None and not problems:
        try:
            cfg.validate()
        except ConfigError as e:
            problems += [f"{where}: {m}" for m in e.problems]
        for check in checks:
            problems += [f"{where}: {m}" for m in check(cfg)]
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg


def report_options(grid: Grid) -> Any:
    """The grid's ``report:`` mapping as ReportOptions (each value coerced to its field's type)."""
    from ecg_bench.config import coerce, iter_leaf_fields
    from ecg_bench.evaluation.report import ReportOptions

    fields = {name: typ for name, typ, _, _ in iter_leaf_fields(ReportOptions)}
    problems, values = [], {}
    for k, v in grid.report.items():
        if k not in fields:
            problems.append(f"{grid.path}: report: unknown key {k!r}; valid: {', '.join(fields)}")
            continue
        try:
            values[k] = coerce(v, fields[k], f"{grid.path}: report.{k}")
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise ConfigError(problems)
    try:
        return ReportOptions(**values)
    except ConfigError as e:
        raise ConfigError([f"{grid.path}: {m}" for m in e.problems]) from None


# ---------------------------------------------------------------- cells


def _same(rule_value: Any, value: Any) -> bool:
    """A rule's value matches a cell's: equal, or for a component choice the same type (a name alone) and the
    options the rule gives."""
    if isinstance(value, str) and isinstance(rule_value, Mapping):
        return set(rule_value) <= {"type"} and rule_value.get("type") == value
    if isinstance(value, Mapping):
        if isinstance(rule_value, str):
            return value.get("type") == rule_value
        if isinstance(rule_value, Mapping):
            return all(k in value and _same(v, value[k]) for k, v in rule_value.items())
    return rule_value == value


def matches(rule: Mapping[str, Any], assignment: Mapping[str, Any]) -> bool:
    return all(k in assignment and _same(v, assignment[k]) for k, v in rule.items())


def expand(axes: Mapping[str, list[Any]], include: Sequence[Mapping[str, Any]] = (),
           exclude: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:  # fmt: skip
    """The cells' assignments: the product of the axes less the excluded, then each include rule crossed with the
    axes it does not name; duplicates dropped, order kept."""
    keys = list(axes)
    out: list[dict[str, Any]] = []
    for values in itertools.product(*(axes[k] for k in keys)):
        a = dict(zip(keys, values))
        if not any(matches(r, a) for r in exclude):
            out.append(a)
    for rule in include:
        free = [k for k in keys if k not in rule]
        for values in itertools.product(*(axes[k] for k in free)):
            out.append({**{k: rule[k] for k in keys if k in rule}, **dict(zip(free, values)),
                        **{k: v for k, v in rule.items() if k not in axes}})  # fmt: skip
    seen, unique = set(), []
    for a in out:
        key = json.dumps(a, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(a)
    return unique


def _label(value: Any) -> str:
    """A value as a cell name shows it: a component by its type and options (``spectral-hidden=64``), a section's
    values one after another (``llava-signal-conv1d``), a path or hub id by its last part."""
    if isinstance(value, Mapping):
        if "type" in value:
            return "-".join([str(value["type"]), *(f"{k}={_label(v)}" for k, v in value.items() if k != "type")])
        return "-".join(_label(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "+".join(_label(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and "/" in value.rstrip("/"):
        return value.rstrip("/").rsplit("/", 1)[1]
    return str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its last part, or by more of it where the last parts of two keys are the same."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if sum(1 for o in keys if o == short or o.endswith("." + short)) == 1:
                break
        out[k] = short
    return out


def _digest(value: Any, n: int = 8) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


def cell_names(assignments: Sequence[Mapping[str, Any]]) -> list[str]:
    """A stable, filesystem-safe, unique folder name per assignment, made of its values (``encoder=conv1d__fold=0``)."""
    keys = list(dict.fromkeys(k for a in assignments for k in a))
    short = _short_keys(keys)
    names = []
    for a in assignments:
        name = "__".join(f"{short[k]}={_label(v)}" for k, v in a.items()) or "base"
        name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).lstrip(".") or "cell"
        if len(name) > MAX_NAME:
            name = f"{name[:MAX_NAME]}-{_digest(a)}"
        names.append(name)
    counts = {n: names.count(n) for n in names}
    return [f"{n}-{_digest(a)}" if counts[n] > 1 else n for n, a in zip(names, assignments)]


def store_key(cfg: RunConfig) -> str:
    """Folder name of the segment store the cells with these data settings share."""
    from ecg_bench.pipeline import source_settings

    return f"{cfg.data.source.type}-{_digest([source_settings(cfg), to_dict(cfg.data.source)])}"


def _problems_of(e: ConfigError, where: str) -> list[str]:
    return [f"{where}: {m[2:] if m.startswith('--') else m}" for m in e.problems]


def count_cells(axes: Mapping[str, list[Any]], include: Sequence[Mapping[str, Any]] = (),
                exclude: Sequence[Mapping[str, Any]] = (), stop: int = MAX_SWEEP_CELLS) -> tuple[int, bool]:
    """How many cells ``expand`` gives, counted without making them: (count, exact). Past ``stop`` the count may
    be a bound (duplicates not removed) or, with exclude rules over a huge product, a lower bound."""
    product = math.prod(len(v) for v in axes.values())
    included = sum(math.prod(len(axes[k]) for k in axes if k not in rule) for rule in include)
    if product + included <= stop:
        return len(expand(axes, include, exclude)), True
    if not exclude:
        return product + included, not include  # include rules may repeat cells of the product
    kept = included
    for scanned, values in enumerate(itertools.product(*axes.values()), 1):  # lazily, until past the limit
        kept += not any(matches(r, dict(zip(axes, values))) for r in exclude)
        if kept > stop or scanned >= 100 * stop:
            return max(kept, stop + 1), False
    return kept, kept <= stop


def check_size(grid: Grid, max_cells: int) -> int:
    """ConfigError when the grid makes more than ``max_cells`` cells (limits.MAX_SWEEP_CELLS): the count and an
    estimate of the work, before any cell's config is built."""
    if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 1:
        raise ConfigError([f"--max_cells must be an integer >= 1, got {max_cells!r}"])
    n, exact = count_cells(grid.axes, grid.include, grid.exclude, max_cells)
    if n <= max_cells:
        return n
    steps = grid.base.train.max_steps
    sizes = " x ".join(f"{len(v)} {k}" for k, v in grid.axes.items())
    raise ConfigError([
        f"{grid.path}: the grid makes {'' if exact else 'at least ' if grid.exclude else 'up to '}{n:,} cells ({sizes}"
        f"{f' + {len(grid.include)} include rule(s)' if grid.include else ''}), more than the {max_cells:,} a sweep may "
        f"have: each cell is a whole run (train.max_steps {steps:,} in the base), about {n * steps:,} training steps "
        f"and {n:,} run folders in all. Check the axes; to run it anyway pass --max_cells {n} at the risk of "
        f"{SWEEP_CELLS_RISK}"
    ])


def _cells(grid: Grid, checks: Sequence[Callable[[Any], list[str]]]) -> list[Cell]:
    """Every cell's config, built over the base; first each axis value alone, then each cell."""
    problems: list[str] = []
    for key, values in grid.axes.items():
        for i, v in enumerate(values):
            try:
                build(grid.base, None, copy.deepcopy({key: v}), checks=checks)
            except ConfigError as e:
                problems += _problems_of(e, f"{grid.path}: axes {key}[{i}] = {_label(v)}")
    for i, rule in enumerate(grid.include):
        extra = {k: v for k, v in rule.items() if k not in grid.axes}
        try:
            build(grid.base, None, copy.deepcopy(extra), checks=checks)
        except ConfigError as e:
            problems += _problems_of(e, f"{grid.path}: include[{i}]")
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    assignments = expand(grid.axes, grid.include, grid.exclude)
    if not assignments:
        raise ConfigError([f"{grid.path}: the exclude rules leave no cell"])
    cells = []
    for name, a in zip(cell_names(assignments), assignments):
        overrides = copy.deepcopy({**a, "output_dir": str(grid.output_dir / name)})  # build must not alter the axes
        try:
            cfg = build(grid.base, None, overrides, checks=checks)
        except ConfigError as e:
            problems += _problems_of(e, f"{grid.path}: cell {name}")
            continue
        if not cfg.data.store_dir:
            cfg.data.store_dir = str(grid.output_dir / "stores" / store_key(cfg))
        cells.append(Cell(name, a, cfg))
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cells


# ---------------------------------------------------------------- state


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SweepState:
    """``sweep.json``: per cell its values, status (pending, running, done, failed, skipped, interrupted), error,
    seconds and log; written atomically after every change (cells may finish in threads)."""

    def __init__(self, grid: Grid) -> None:
        self.path = grid.output_dir / SWEEP_FILE
        self.lock = threading.Lock()
        old = {}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text()).get("cells", {})
            except (OSError, ValueError, AttributeError):
                old = {}
        self.data: dict[str, Any] = {"grid": str(grid.path), "updated": _now(), "report": "", "cells": {}}
        for c in grid.cells:
            prev = old.get(c.name) if isinstance(old.get(c.name), dict) else {}
            self.data["cells"][c.name] = {"folder": str(c.folder), "assignment": c.assignment,
                                          "status": prev.get("status", "pending"), "error": prev.get("error", ""),
                                          "seconds": prev.get("seconds"), "log": str(c.folder / CELL_LOG)}  # fmt: skip

    def set(self, name: str, **values: Any) -> None:
        with self.lock:
            self.data["cells"][name].update(values)
            self._write()

    def save(self, **values: Any) -> None:
        with self.lock:
            self.data.update(values)
            self._write()

    def _write(self) -> None:
        self.data["updated"] = _now()
        tmp = self.path.with_name(f"{SWEEP_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)

    def status(self, name: str) -> str:
        return self.data["cells"][name]["status"]


def results_problem(cell: Cell) -> str:
    """Why the cell is not finished ("" when it is): its results.json must exist, parse and hold what the report
    reads (config, conditions with metrics). A truncated or otherwise broken one is not finished."""
    from ecg_bench.evaluation.report.runs import load_run

    path = cell.folder / "results.json"
    if not path.is_file():
        return "no results.json"
    try:
        load_run(path)
    except (ECGBenchError, RecursionError, MemoryError) as e:
        return str(e) or type(e).__name__
    return ""


def finished(cell: Cell) -> bool:
    return not results_problem(cell)


def set_aside(cell: Cell, why: str) -> Path:
    """Move the folder of a cell whose results.json is broken to ``<name>.invalid-<time>`` beside it (kept, never
    deleted), so the cell is run again from the start in a fresh folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = cell.folder.with_name(f"{cell.folder.name}.invalid-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = cell.folder.with_name(f"{cell.folder.name}.invalid-{stamp}-{n}")
    os.replace(cell.folder, aside)
    run_lock.holder_path(run_lock.lock_path(aside)).unlink(missing_ok=True)  # this sweep's, taken to move it
    log.warning("cell %s: its results.json is not a finished run's (%s); the cell runs again, its folder is kept "
                "as %s", cell.name, why, aside)  # fmt: skip
    return aside


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def config_changes(cell: Cell) -> list[str]:
    """How the config.json in the cell's folder (written by its run) differs from the cell's config; raises
    OSError / ValueError / ConfigError when it cannot be read."""
    old = _flat(RunConfig.from_dict(json.loads((cell.folder / "config.json").read_text())).to_dict())
    new = _flat(cell.config.to_dict())
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new})
            if k not in IGNORED_CHANGES and old.get(k) != new.get(k)]  # fmt: skip


def check_finished(cells: Sequence[Cell]) -> None:
    """A finished cell is skipped only if its config.json is the cell's config: ConfigError naming the changes."""
    problems = []
    for c in cells:
        if not finished(c):
            continue
        try:
            changed = config_changes(c)
        except (OSError, ValueError, ConfigError) as e:
            problems.append(f"{c.folder}: has results.json but no readable config.json ({e}); move it away to rerun that cell")
            continue
        if changed:
            problems.append(f"cell {c.name}: {c.folder} holds results made with another config ({'; '.join(changed[:5])}"
                            f"{' ...' if len(changed) > 5 else ''}); the sweep never reuses or overwrites them: choose "
                            f"another output_dir")  # fmt: skip
    if problems:
        raise ConfigError(problems)


def latest_checkpoint(cell: Cell) -> Path | None:
    """The newest complete step checkpoint of a cell that was killed while training (made by ecg-bench)."""
    steps = sorted((cell.folder / "checkpoints").glob("step-*")) if (cell.folder / "checkpoints").is_dir() else []
    steps = [p for p in steps if re.fullmatch(r"step-\d+", p.name) and folders.is_ours(p, "checkpoint")]
    return steps[-1] if steps else None


def cell_command(cell: Cell) -> list[str]:
    cmd = [sys.executable, "-m", "ecg_bench", "run", "--config", str(cell.folder / CELL_CONFIG)]
    ck = latest_checkpoint(cell)
    try:
        changed = config_changes(cell) if ck is not None else []
    except (OSError, ValueError, ConfigError) as e:
        changed = [str(e)]
    if changed:  # a checkpoint of another config (the grid changed since) is not resumed: the cell starts over
        log.warning("cell %s: its checkpoint %s was made with another config (%s); training from the start", cell.name,
                    ck, "; ".join(changed[:3]))  # fmt: skip
    elif ck is not None:
        log.info("cell %s: resuming from its checkpoint %s", cell.name, ck)
        cmd += ["--train.resume_from", str(ck)]
    return cmd


def _error_of(text: str, rc: Any) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1][len("error:") :].strip()
    tail = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (tail[-1] if tail else f"exit status {rc}")[:2000]


# ---------------------------------------------------------------- running


@dataclass
class SweepOutcome:
    """What ``run_sweep`` did."""

    folder: Path
    """The sweep folder."""
    cells: list[Cell]
    """Every cell of the grid."""
    status: dict[str, str]
    """Cell name -> done, failed or interrupted."""
    report: Path | None
    """The report folder, or None when none was written."""
    report_error: str = ""
    """Why the report was not written (empty when it was, or when no cell finished)."""

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.status.items() if s != "done"]


def _slot_env(slot: int, jobs: int) -> dict[str, str]:
    """The environment of a cell run in worker ``slot`` of ``jobs``: its share of the CPU threads and, with several
    GPUs visible, one of them."""
    env = dict(os.environ)
    if jobs > 1:
        if "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        if not visible:
            import torch

            visible = [str(i) for i in range(torch.cuda.device_count())]
        if len(visible) > 1:
            env["CUDA_VISIBLE_DEVICES"] = visible[slot % len(visible)]
    return env


def _run_local(cell: Cell, env: dict[str, str]) -> tuple[str, str]:
    logfile = cell.folder / CELL_LOG
    # the sweep holds the cell's folder for the run it starts (which writes under that lock), and the run dies with it
    # (and hands it the lock's descriptor: the cell keeps the lock should the sweep die before it)
    with run_lock.hold(cell.folder, "a sweep cell") as lock, run_lock.descriptors_for_child(lock) as fds, \
            open(logfile, "a") as f:
        cmd = cell_command(cell)
        f.write(f"\n# {_now()} {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=run_lock.passed_down_env(lock, env),
                            check=False, pass_fds=fds, **processes.popen_kwargs()).returncode  # fmt: skip
    if rc == 0 and finished(cell):
        return "done", ""
    text = logfile.read_text(errors="replace")
    return "failed", _error_of(text[text.rfind("\n# ") :], rc) + f" (log: {logfile})"


def _submitit_executor(kind: str, grid: Grid, jobs: int) -> Any:
    """submitit's executor: its jobs' pickles (a command line in, the command's output back) stay in
    <output_dir>/submitit, written and read only by this sweep."""
    try:
        import submitit
    except ImportError:
        raise ConfigError([f"--executor {kind} needs submitit: pip install 'ecg-bench[sweep]'"]) from None
    folder = grid.output_dir / "submitit" / "%j"
    if kind == "slurm":
        if shutil.which("sbatch") is None:
            raise ConfigError(["--executor slurm: no sbatch on PATH (run the sweep on a SLURM login node, or use "
                               "--executor local)"])  # fmt: skip
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = dict(grid.slurm)
        if jobs > 0:
            params.setdefault("slurm_array_parallelism", jobs)
        params = {k if k in ("timeout_min", "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb",
                             "name", "stderr_to_stdout", "slurm_array_parallelism") or k.startswith("slurm_")
                  else f"slurm_{k}": v for k, v in params.items()}  # fmt: skip
        ex.update_parameters(**params)
        return ex
    ex = submitit.LocalExecutor(folder=folder)
    if "timeout_min" in grid.slurm:
        ex.update_parameters(timeout_min=grid.slurm["timeout_min"])
    return ex


def _run_submitit(cells: Sequence[Cell], grid: Grid, state: SweepState, kind: str, jobs: int) -> None:
    import submitit

    ex = _submitit_executor(kind, grid, jobs)
    t0 = time.time()
    cwd = os.getcwd()  # a relative path of the grid (a tokenizer, data_dir) means the same in the job
    functions = [submitit.helpers.CommandFunction(cell_command(c), verbose=False, cwd=cwd) for c in cells]
    if kind == "slurm":  # one job array, slurm_array_parallelism at a time
        with ex.batch():
            submitted = [ex.submit(f) for f in functions]
        for c in cells:
            state.set(c.name, status="running", error="", started=_now())
        pairs = list(zip(cells, submitted))
        for c, job in pairs:
            _collect(c, job, state, t0)
        return

    def one(cf: tuple[Cell, Any]) -> None:  # the local executor starts what it is given: N at a time
        state.set(cf[0].name, status="running", error="", started=_now())
        _collect(cf[0], ex.submit(cf[1]), state, time.time())

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        list(pool.map(one, zip(cells, functions)))


def _collect(cell: Cell, job: Any, state: SweepState, t0: float) -> None:
    try:
        output = job.result()
        error = ""
    except Exception as e:  # submitit's FailedJobError carries the command's stderr
        output, error = "", _error_of(str(e), "?")
    logfile = cell.folder / CELL_LOG
    with open(logfile, "a") as f:
        f.write(f"\n# {_now()} submitit job {job.job_id} (its logs: {job.paths.stdout.parent})\n{output or ''}")
    status = "done" if not error and finished(cell) else "failed"
    state.set(cell.name, status=status, error=error if status == "failed" else "",
              seconds=round(time.time() - t0, 1), finished=_now())  # fmt: skip


def prepare_cells(grid: Grid) -> None:
    """The sweep folder (ours, marked) and each unfinished cell's folder with its cell.json, before any cell runs.
    A cell folder another process is writing (a run left by a killed sweep) is refused (RunLockError naming it);
    one whose results.json is broken is set aside (``set_aside``) and started afresh."""
    folders.claim(grid.output_dir, "sweep")
    for c in grid.cells:
        why = results_problem(c)
        if not why:
            continue
        if why != "no results.json":
            with run_lock.hold(folders.claim(c.folder, "run"), "a sweep cell"):
                set_aside(c, why)
        with run_lock.hold(folders.claim(c.folder, "run"), "a sweep cell"):
            c.config.save(c.folder / CELL_CONFIG)


def run_sweep(grid: Grid, jobs: int = 1, executor: str = "local", report: bool = True) -> SweepOutcome:
    """Run the grid's unfinished cells, record each one's status, then write the report over the finished ones."""
    if executor not in EXECUTORS:
        raise ConfigError([f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"])
    if jobs < 1:
        raise ConfigError([f"--jobs must be >= 1, got {jobs}"])
    check_finished(grid.cells)
    folders.check_replaceable(grid.output_dir / "report", "report")
    options = report_options(grid) if report else None
    with run_lock.hold(folders.claim(grid.output_dir, "sweep"), "a sweep folder"):  # one sweep at a time in a folder
        return _run_locked(grid, jobs, executor, report, options)


def _run_locked(grid: Grid, jobs: int, executor: str, report: bool, options: Any) -> SweepOutcome:
    prepare_cells(grid)
    state = SweepState(grid)
    todo = []
    for c in grid.cells:
        if finished(c):
            if state.status(c.name) != "done":
                state.set(c.name, status="done", error="")
            log.info("cell %s: finished before (results.json), skipped", c.name)
        else:
            todo.append(c)
    log.info("sweep %s: %d cells, %d to run (%s, %d at a time)", grid.output_dir, len(grid.cells), len(todo), executor, jobs)
    try:
        if executor == "local":
            _run_local_cells(todo, state, jobs)
        elif todo:
            _run_submitit(todo, grid, state, executor, jobs)
    except BaseException:
        for c in todo:
            if state.status(c.name) == "running":
                state.set(c.name, status="interrupted", error="the sweep was stopped while it ran")
        raise
    status = {c.name: state.status(c.name) for c in grid.cells}
    done = [c.folder for c in grid.cells if status[c.name] == "done"]
    out, report_error = None, ""
    if report and done:
        from ecg_bench.evaluation.report import write_report
        from ecg_bench.errors import ECGBenchError

        try:
            out = write_report(done, grid.output_dir / "report", options).folder
        except ECGBenchError as e:
            report_error = str(e)
            log.error("sweep report: %s", e)
        state.save(report=str(out) if out else f"not written: {report_error}")
    return SweepOutcome(grid.output_dir, grid.cells, status, out, report_error)


def _run_local_cells(todo: Sequence[Cell], state: SweepState, jobs: int) -> None:
    slots = list(range(jobs))
    slot_lock = threading.Lock()

    def one(cell: Cell) -> None:
        with slot_lock:
            slot = slots.pop(0)
        try:
            state.set(cell.name, status="running", error="", started=_now())
            t0 = time.time()
            log.info("cell %s: running (%s)", cell.name, cell.folder)
            status, error = _run_local(cell, _slot_env(slot, jobs))
            state.set(cell.name, status=status, error=error, seconds=round(time.time() - t0, 1), finished=_now())
            if error:
                log.error("cell %s failed: %s", cell.name, error)
            else:
                log.info("cell %s: done in %.0f s", cell.name, time.time() - t0)
        finally:
            with slot_lock:
                slots.append(slot)

    if jobs == 1:
        for c in todo:
            one(c)
        return
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, todo))


def describe(grid: Grid) -> str:
    """The cells as a table: name, status (done = results.json there), and the values that make the cell."""
    rows = [f"{len(grid.cells)} cells in {grid.output_dir}"]
    width = max(len(c.name) for c in grid.cells)
    for c in grid.cells:
        status = "done" if finished(c) else "to run"
        values = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in c.assignment.items())
        rows.append(f"  {c.name:<{width}}  {status:<6}  {values}")
    return "\n".join(rows)
