"""Running a sweep: claim the folders, run the unfinished cells with the chosen launcher, write the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecg_bench import folders, run_lock
from ecg_bench.errors import ConfigError
from ecg_bench.logging_utils import get_logger
from ecg_bench.sweep.grid import Cell, Grid, report_options
from ecg_bench.sweep.launchers import LAUNCHERS
from ecg_bench.sweep.state import CELL_CONFIG, SweepState, check_finished, finished, results_problem, set_aside

log = get_logger(__name__)


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
    if executor not in LAUNCHERS:
        raise ConfigError([f"--executor must be one of {', '.join(LAUNCHERS.names())}, got {executor!r}"])
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
        if todo:
            LAUNCHERS.get(executor)(todo, grid, state, jobs)
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


def describe(grid: Grid) -> str:
    """The cells as a table: name, status (done = results.json there), and the values that make the cell."""
    rows = [f"{len(grid.cells)} cells in {grid.output_dir}"]
    width = max(len(c.name) for c in grid.cells)
    for c in grid.cells:
        status = "done" if finished(c) else "to run"
        values = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in c.assignment.items())
        rows.append(f"  {c.name:<{width}}  {status:<6}  {values}")
    return "\n".join(rows)
