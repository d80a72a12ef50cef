"""Reading a grid file: its base, axes, include and exclude rules, and every cell's checked config."""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config import RunConfig, build, layered, read_config_file, to_dict
from ecg_bench.errors import ConfigError
from ecg_bench.limits import MAX_SWEEP_CELLS, SWEEP_CELLS_RISK
from ecg_bench.sweep.naming import _digest, _label, cell_names

GRID_KEYS = ("preset", "base", "axes", "include", "exclude", "output_dir", "report", "slurm")
PRESETS = ("default", "quickstart")


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


def store_key(cfg: RunConfig) -> str:
    """Folder name of the segment store the cells with these data settings share."""
    from ecg_bench.data.store import source_settings

    return f"{cfg.data.source.type}-{_digest([source_settings(cfg), to_dict(cfg.data.source)])}"


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


def _problems_of(e: ConfigError, where: str) -> list[str]:
    return [f"{where}: {m[2:] if m.startswith('--') else m}" for m in e.problems]


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
