"""kill -9 of the top process of ``run --nproc 2`` (torchrun's ranks, in a session of their own) and of ``sweep``
(its running cell): no process of theirs remains 10 seconds later (read from /proc)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ecg_bench import run_lock
from ecg_bench.presets import tiny

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")]

SRC = str(Path(__file__).resolve().parents[1] / "src")
GONE_WITHIN_S = 10.0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of ``pid`` from /proc, None when it is gone."""
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0]


def _descendants(top: int) -> set[int]:
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            parents[int(d.name)] = st[0]
    found, frontier = set(), {top}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if (st := _stat(p)) is not None and st[1] != "Z"}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_top_and_check(top: subprocess.Popen, seen: set[int]) -> None:
    seen |= _descendants(top.pid)
    os.kill(top.pid, signal.SIGKILL)
    top.wait()
    deadline = time.monotonic() + GONE_WITHIN_S
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _alive(seen)
    for p in left:  # leave nothing behind even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not left, f"still running {GONE_WITHIN_S:.0f} s after kill -9 of {top.pid}: " + "; ".join(
        f"{p}: {_cmdline(p)[:200]}" for p in left)


def _lock_is_free(folder: Path) -> None:
    """The folder's lock can be taken within the same 10 s; else name every process that holds the lock file open."""
    try:
        with run_lock.hold(folder, timeout=GONE_WITHIN_S):
            return
    except run_lock.RunLockError as e:
        lock = str(run_lock.lock_path(folder).resolve())
        holders = []
        for fd in Path("/proc").glob("[0-9]*/fd/*"):
            try:
                if os.readlink(fd) == lock:
                    pid = int(fd.parts[2])
                    holders.append(f"{pid} (parent {(_stat(pid) or (0, ''))[0]}): {_cmdline(pid)[:200]}")
            except OSError:
                continue
        pytest.fail(f"{e}; processes with the lock file open: {holders}")


def _tiny_config(tmp_path: Path, out: Path, steps: int) -> Path:
    cfg = tiny(str(out)).to_dict()
    cfg["train"]["num_threads"], cfg["train"]["max_steps"], cfg["eval"]["conditions"] = 1, steps, ["real"]
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _wait(predicate, proc: subprocess.Popen, seen: set[int], what: str) -> None:
    while not predicate():
        seen |= _descendants(proc.pid)
        if proc.poll() is not None:
            pytest.fail(f"exited (rc {proc.returncode}) before {what}: {proc.stdout.read()[-3000:]}")
        time.sleep(0.1)


def test_kill_9_of_run_nproc_2_leaves_no_rank_running(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ecg_bench", "run", "--nproc", "2", "--config", str(_tiny_config(tmp_path, out, 2000)),
           "--train.strategy", "ddp", "--train.device", "cpu"]  # fmt: skip
    top = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    seen: set[int] = set()
    ranks = lambda: {p for p in _alive(_descendants(top.pid)) if "ecg_bench" in _cmdline(p)}  # noqa: E731
    # both ranks started and rank 0 is writing the run (its log exists: the data and model are being built)
    _wait(lambda: len(ranks()) >= 2 and (out / "run.log").exists(), top, seen, "two ranks were running")
    assert all(_stat(p)[0] == top.pid for p in ranks())  # torchrun's agent runs in the top process
    _kill_top_and_check(top, seen)
    assert len(seen) >= 2
    # the folder is free again: its lock died with the processes
    _lock_is_free(out)


def test_kill_9_of_sweep_leaves_no_cell_running_and_a_rerun_finds_the_cell_free(tmp_path):
    out = tmp_path / "sweep"
    base = json.loads(_tiny_config(tmp_path, out, 2000).read_text())
    base.pop("output_dir")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": base, "axes": {"train.seed": [0, 1]}, "output_dir": str(out)}))
    top = subprocess.Popen([sys.executable, "-m", "ecg_bench", "sweep", str(grid)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=_env())  # fmt: skip
    seen: set[int] = set()
    cell = out / "seed=0"
    cells = lambda: {p for p in _alive(_descendants(top.pid)) if " run --config " in _cmdline(p)}  # noqa: E731
    # the first cell's run is writing its folder under the lock the sweep holds for it
    _wait(lambda: cells() and (cell / "run.log").exists(), top, seen, "a cell was running")
    assert run_lock.read_holder(run_lock.lock_path(cell))["pid"] == top.pid
    _kill_top_and_check(top, seen)
    # no writer is left in the cell folder: a rerun (here: the lock a rerun takes) gets it
    _lock_is_free(cell)
