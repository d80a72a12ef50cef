"""How the cells of a sweep run: ``LAUNCHERS``, a registry from ``--executor NAME`` to a function
``launch(cells, grid, state, jobs)`` that runs the given unfinished cells and records each one's status in ``state``.
A new launcher is one more registered function."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ecg_bench import processes, run_lock
from ecg_bench.errors import ConfigError
from ecg_bench.logging_utils import get_logger
from ecg_bench.registry import Registry
from ecg_bench.sweep.grid import Cell, Grid
from ecg_bench.sweep.state import CELL_LOG, SweepState, _error_of, _now, cell_command, finished

log = get_logger(__name__)

Launcher = Callable[[Sequence[Cell], Grid, SweepState, int], None]
LAUNCHERS: Registry[Launcher] = Registry("launcher")
"""``--executor NAME`` -> the function that runs a sweep's unfinished cells."""


@LAUNCHERS.register("local")
def run_local(cells: Sequence[Cell], grid: Grid, state: SweepState, jobs: int) -> None:
    """Subprocesses on this machine, ``jobs`` at a time (each with its share of the CPU threads and, with several
    GPUs, its own GPU)."""
    _run_local_cells(cells, state, jobs)


@LAUNCHERS.register("slurm")
def run_slurm(cells: Sequence[Cell], grid: Grid, state: SweepState, jobs: int) -> None:
    """A SLURM job array through submitit (the grid's ``slurm:`` parameters), ``jobs`` at a time."""
    _run_submitit(cells, grid, state, "slurm", jobs)


@LAUNCHERS.register("submitit_local")
def run_submitit_local(cells: Sequence[Cell], grid: Grid, state: SweepState, jobs: int) -> None:
    """submitit's LocalExecutor on this machine, ``jobs`` at a time."""
    _run_submitit(cells, grid, state, "submitit_local", jobs)


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
