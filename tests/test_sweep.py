"""``ecg-bench sweep``: grid expansion (include / exclude, component-valued axes), every bad value reported before
any cell runs, a reduced quick grid end to end (cells, shared store, report), and resuming a killed sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecg_bench import cli
from ecg_bench.errors import ConfigError
from ecg_bench.pipeline import config_problems
from ecg_bench.presets import tiny
from ecg_bench.sweep import cell_names, expand, load_grid

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, grid: dict) -> Path:
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def test_expand_with_exclude_include_and_component_values():
    axes = {"model.encoder": ["conv1d", {"type": "spectral", "hidden": 64}], "data.fold": [0, 1], "train.seed": [0, 1]}
    cells = expand(axes, exclude=[{"model.encoder": "spectral", "data.fold": 1}],  # a component matched by its type
                   include=[{"model.encoder": "conv1d", "train.ecg": "none"}])  # fmt: skip
    product = [c for c in cells if "train.ecg" not in c]
    assert len(product) == 8 - 2
    assert not any(c["model.encoder"] != "conv1d" and c["data.fold"] == 1 for c in product)
    extra = [c for c in cells if "train.ecg" in c]  # crossed with the axes the rule does not name: fold x seed
    assert len(extra) == 4 and {(c["data.fold"], c["train.seed"]) for c in extra} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(c["model.encoder"] == "conv1d" for c in extra)
    # an exclude rule with options matches only the cells with those options
    assert len(expand(axes, exclude=[{"model.encoder": {"type": "spectral", "hidden": 32}}])) == 8
    assert len(expand(axes, exclude=[{"model.encoder": {"type": "spectral", "hidden": 64}}])) == 4
    # an include rule that is already a cell adds nothing
    assert len(expand(axes, include=[{"model.encoder": "conv1d", "data.fold": 0, "train.seed": 1}])) == 8

    names = cell_names(cells)
    assert len(set(names)) == len(names)
    assert names[0] == "encoder=conv1d__fold=0__seed=0"
    assert "encoder=spectral-hidden=64__fold=0__seed=1" in names
    assert names == cell_names(cells)  # stable
    odd = cell_names([{"model.llm": "org/Some Model:v1", "data.mapped_dir": "../x y"}])[0]
    assert odd == "llm=Some_Model_v1__mapped_dir=x_y"
    assert cell_names([{"model.llm": "a/m"}, {"model.llm": "b/m"}])[0].startswith("llm=m-")  # same label: hashed apart


def test_bad_values_are_all_reported_before_any_cell_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    grid = _write(tmp_path / "grid.yaml", {
        "base": {"train": {"max_steps": 2}},
        "axes": {"model.encoder": ["conv1d", {"type": "spectral", "hidden": "wide"}, "nope"], "data.fold": [0, 7],
                 "train.batch_size": [4, 0]},
        "exclude": [{"train.lr": 1.0}],
        "output_dir": str(out),
    })  # fmt: skip
    assert cli.main(["sweep", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "exclude[0] names ['train.lr'], not axes" in err
    assert not out.exists()

    grid = _write(tmp_path / "grid.yaml", {**yaml.safe_load(grid.read_text()), "exclude": []})
    assert cli.main(["sweep", str(grid)]) == 2
    err = capsys.readouterr().err
    for expected in ("axes model.encoder[1] = spectral-hidden=wide: model.encoder.hidden: expected an integer, got 'wide'",
                     "axes model.encoder[2] = nope: model.encoder: unknown encoder 'nope'",
                     "axes data.fold[1] = 7: data.fold must be in [0, 4], got 7",
                     "axes train.batch_size[1] = 0: train.batch_size must be >= 1, got 0"):  # fmt: skip
        assert expected in err, err
    assert not out.exists()  # nothing was written, no cell ran

    with pytest.raises(ConfigError, match="unknown key"):
        load_grid(_write(tmp_path / "g2.yaml", {"axes": {"data.fold": [0]}, "output_dir": "x", "cells": 3}))
    with pytest.raises(ConfigError, match=r"cell fold=4__num_folds=3: data.fold must be in \[0, 2\]"):  # only the combination is bad
        load_grid(_write(tmp_path / "g3.yaml", {"axes": {"data.fold": [4], "data.num_folds": [3, 5]},
                                                "output_dir": str(out)}), checks=[config_problems])  # fmt: skip


def test_bench_recipes_load_as_grids():
    for path in sorted((ROOT / "recipes" / "bench").glob("*.yaml")):
        grid = load_grid(path, "/tmp/ecg-bench-never-written", checks=[config_problems])
        assert len(grid.cells) >= 8
        assert f"ecg-bench sweep recipes/bench/{path.name}" in path.read_text()
        assert "Expected" in path.read_text()


def _tiny_grid(tmp_path: Path, out: Path, extra: dict | None = None) -> Path:
    base = tiny(str(out)).to_dict()
    base.pop("output_dir")
    base["eval"]["conditions"] = ["real", "zeros", "shuffled"]
    base["train"]["num_threads"] = 1
    return _write(tmp_path / "quick_small.yaml", {
        "base": base,
        "axes": {"model.encoder": [{"type": "conv1d", "num_tokens": 2, "dim": 32}, {"type": "spectral", "num_tokens": 2}]},
        "output_dir": str(out), "report": {"examples": 1, "bootstrap_resamples": 200}, **(extra or {}),
    })  # fmt: skip


@pytest.mark.slow
def test_reduced_quick_grid_runs_end_to_end_and_resumes_only_unfinished_cells(tmp_path, capsys):
    out = tmp_path / "sweep"
    # a third cell that fails at run time (its checkpoint does not exist), after the config checks passed
    grid = _tiny_grid(tmp_path, out, {"include": [{"model.encoder": {"type": "conv1d", "num_tokens": 2, "dim": 32},
                                                   "train.resume_from": str(tmp_path / "no-such-checkpoint")}]})  # fmt: skip
    assert cli.main(["sweep", str(grid), "--dry_run"]) == 0
    assert "3 cells" in capsys.readouterr().out and not out.exists()

    assert cli.main(["sweep", str(grid), "--jobs", "2"]) == 1  # one cell failed, the others finished
    printed = capsys.readouterr().out
    state = json.loads((out / "sweep.json").read_text())["cells"]
    failed = [n for n, c in state.items() if c["status"] == "failed"]
    done = sorted(n for n, c in state.items() if c["status"] == "done")
    assert len(failed) == 1 and "resume_from" in failed[0] and "no-such-checkpoint" in state[failed[0]]["error"]
    assert done == ["encoder=conv1d-num_tokens=2-dim=32", "encoder=spectral-num_tokens=2"]
    assert "1 of 3 cells not finished" in printed

    # the report over the finished cells: tables, figures, index.html
    report = out / "report"
    assert (report / "index.html").is_file() and "report:" in printed
    for table in ("summary", "per_question_type", "comparisons", "signal_audit"):
        assert (report / "tables" / f"{table}.md").is_file() and (report / "tables" / f"{table}.tex").is_file()
    assert (report / "figures" / "scores.png").stat().st_size > 1000
    html = (report / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "conv1d" in html and "spectral" in html
    summary = (report / "tables" / "summary.csv").read_text()
    assert "conv1d" in summary and "spectral" in summary

    # both cells read one shared segment store; each cell's folder holds its config and results
    stores = [p for p in (out / "stores").iterdir() if p.is_dir()]
    assert len(stores) == 1
    for name in done:
        res = json.loads((out / name / "results.json").read_text())
        assert res["config"]["data"]["store_dir"] == str(stores[0]) and res["training"]["steps"] == 4
        assert res["config"]["output_dir"] == str(out / name)

    # a killed sweep: one cell's results are gone; rerun (through submitit's local executor) redoes only that one
    # and the failed cell, never the finished one
    kept, redone = out / done[0] / "results.json", out / done[1] / "results.json"
    mtime = kept.stat().st_mtime_ns
    redone.unlink()
    pytest.importorskip("submitit")
    assert cli.main(["sweep", str(grid), "--executor", "submitit_local"]) == 1
    assert kept.stat().st_mtime_ns == mtime
    assert redone.is_file()
    state = json.loads((out / "sweep.json").read_text())["cells"]
    assert [state[n]["status"] for n in done] == ["done", "done"] and state[failed[0]]["status"] == "failed"
    assert "no-such-checkpoint" in state[failed[0]]["error"]
    capsys.readouterr()

    # nothing left to run but the failing cell; a changed base is refused, not mixed with the old results
    changed = yaml.safe_load(grid.read_text())
    changed["base"]["train"]["lr"] = 0.5
    _write(grid, changed)
    assert cli.main(["sweep", str(grid)]) == 2
    assert "holds results made with another config (train.lr: 0.001 -> 0.5)" in capsys.readouterr().err
    assert kept.stat().st_mtime_ns == mtime


def test_a_cell_killed_while_training_resumes_from_its_newest_checkpoint_of_the_same_config(tmp_path):
    from ecg_bench import folders
    from ecg_bench.sweep import cell_command

    grid = load_grid(_tiny_grid(tmp_path, tmp_path / "sweep"))
    cell = grid.cells[0]
    folders.claim(cell.folder, "run")
    assert "--train.resume_from" not in cell_command(cell)
    for step in ("step-000002", "step-000004"):
        folders.claim(cell.folder / "checkpoints" / step, "checkpoint")
    (cell.folder / "checkpoints" / "step-000006").mkdir()  # not a checkpoint ecg-bench finished: never resumed
    cell.config.save(cell.folder / "config.json")  # what its run wrote before it was killed
    cmd = cell_command(cell)
    assert cmd[-2:] == ["--train.resume_from", str(cell.folder / "checkpoints" / "step-000004")]
    assert cmd[cmd.index("--config") + 1] == str(cell.folder / "cell.json")
    other = grid.cells[1].config  # the grid changed since: that checkpoint belongs to another config
    other.output_dir = cell.config.output_dir
    other.save(cell.folder / "config.json")
    assert "--train.resume_from" not in cell_command(cell)


def test_one_sweep_at_a_time_in_a_folder(tmp_path):
    from ecg_bench import folders
    from ecg_bench.folders import FolderError
    from ecg_bench.sweep import run_sweep

    out = tmp_path / "sweep"
    grid = load_grid(_tiny_grid(tmp_path, out))
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FolderError, match="not made by ecg-bench"):  # a folder the tool did not make is refused
        run_sweep(grid)
    (out / "notes.txt").unlink()
    folders.claim(out, "sweep")  # as the first sweep did
    code = (f"import sys\nfrom ecg_bench import run_lock\nwith run_lock.hold({str(out)!r}, 'a sweep folder'):\n"
            "    print('held', flush=True)\n    sys.stdin.read()")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:  # another sweep holds the folder: refused naming it, nothing started
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(FolderError, match=f"{out} is being written by pid {other.pid} .*one writer at a time in a sweep folder"):
            run_sweep(grid)
    finally:
        other.stdin.close()
        other.wait()
    assert not any(c.folder.exists() for c in grid.cells)


def test_launchers_are_a_registry_and_an_unknown_one_is_refused_by_name(tmp_path, capsys):
    """``--executor NAME`` looks NAME up in ``LAUNCHERS`` (a registered function per launcher): an unknown name is a
    usage error listing the registered ones, before any grid is read or folder made."""
    from ecg_bench.sweep import LAUNCHERS

    assert {"local", "slurm", "submitit_local"} <= set(LAUNCHERS.names())
    assert all(callable(LAUNCHERS.get(n)) for n in LAUNCHERS.names())
    grid = _write(tmp_path / "grid.yaml", {"axes": {"data.fold": [0]}, "output_dir": str(tmp_path / "out")})
    assert cli.main(["sweep", str(grid), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--executor must be one of" in err and "submitit_local" in err and "'ray'" in err
    assert not (tmp_path / "out").exists()
