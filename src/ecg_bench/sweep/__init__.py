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

The package: ``grid`` (reading and expanding a grid, every cell's config), ``naming`` (cell folder names),
``state`` (sweep.json, a cell's folder and command), ``launchers`` (``LAUNCHERS``: how cells run, one registered
function per ``--executor``), ``run`` (``run_sweep``).
"""

from __future__ import annotations

from ecg_bench.sweep.grid import Cell, Grid, check_size, count_cells, expand, load_grid, matches, store_key
from ecg_bench.sweep.launchers import LAUNCHERS
from ecg_bench.sweep.naming import cell_names
from ecg_bench.sweep.run import SweepOutcome, describe, prepare_cells, run_sweep
from ecg_bench.sweep.state import (SweepState, cell_command, check_finished, config_changes, finished, latest_checkpoint,
                                   results_problem, set_aside)

__all__ = ["LAUNCHERS", "Cell", "Grid", "SweepOutcome", "SweepState", "cell_command", "cell_names", "check_finished",
           "check_size", "config_changes", "count_cells", "describe", "expand", "finished", "latest_checkpoint", "load_grid", "matches",
           "prepare_cells", "results_problem", "run_sweep", "set_aside", "store_key"]  # fmt: skip
