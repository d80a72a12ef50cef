"""``sweep.json`` (each cell's status) and what a cell's folder says: finished, its config, its newest checkpoint,
the command that runs (or resumes) it."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecg_bench import folders, run_lock
from ecg_bench.config import RunConfig
from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.logging_utils import get_logger
from ecg_bench.sweep.grid import Cell, Grid

log = get_logger(__name__)

SWEEP_FILE = "sweep.json"
CELL_CONFIG = "cell.json"
CELL_LOG = "sweep_cell.log"
IGNORED_CHANGES = ("train.resume_from",)
"""Config keys a finished cell's config.json may differ in from the cell's (a resumed cell records its checkpoint)."""


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
