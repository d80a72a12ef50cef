"""Sweep safety: a grid's size is bounded before any cell is built (``--max_cells`` raises it, naming the risk); a
cell is finished only when its results.json parses and holds a run's results (a truncated one is redone, its folder
kept aside); a cell folder another process is writing is refused; a report that cannot be written fails the sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from ecg_bench import cli, folders, run_lock
from ecg_bench.limits import MAX_SWEEP_CELLS, SWEEP_CELLS_RISK
from ecg_bench.presets import tiny
from ecg_bench.sweep import count_cells, describe, finished, load_grid, prepare_cells

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _grid(tmp_path: Path, axes: dict, **extra) -> Path:
    base = tiny(str(tmp_path / "unused")).to_dict()
    base.pop("output_dir")
    base["train"]["num_threads"], base["eval"]["conditions"] = 1, ["real"]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"base": base, "axes": axes, "output_dir": str(tmp_path / "sweep"), **extra}))
    return path


def test_a_million_cell_grid_is_refused_with_its_count_and_an_estimate_before_any_cell_is_built(tmp_path, capsys):
    grid = _grid(tmp_path, {f"train.{k}": list(range(10)) for k in ("seed", "max_steps", "batch_size", "log_every",
                                                                    "num_threads", "grad_accum")})  # fmt: skip
    assert cli.main(["sweep", str(grid), "--dry_run"]) == 2
    err = capsys.readouterr().err
    assert "the grid makes 1,000,000 cells (10 train.batch_size x 10 train.grad_accum" in err
    assert f"more than the {MAX_SWEEP_CELLS:,} a sweep may have" in err and "about 4,000,000 training steps" in err
    assert "--max_cells 1000000" in err and SWEEP_CELLS_RISK in err and "Traceback" not in err
    assert not (tmp_path / "sweep").exists()


def test_max_cells_raises_the_limit_and_exclude_rules_count(tmp_path, capsys):
    grid = _grid(tmp_path, {"train.seed": [0, 1], "data.fold": [0, 1]})
    assert cli.main(["sweep", str(grid), "--dry_run", "--max_cells", "3"]) == 2
    assert "the grid makes 4 cells" in capsys.readouterr().err
    assert cli.main(["sweep", str(grid), "--dry_run", "--max_cells", "4"]) == 0
    assert "4 cells in" in capsys.readouterr().out
    grid = _grid(tmp_path, {"train.seed": [0, 1], "data.fold": [0, 1]}, exclude=[{"train.seed": 1, "data.fold": 1}])
    assert cli.main(["sweep", str(grid), "--dry_run", "--max_cells", "3"]) == 0
    assert cli.main(["sweep", str(grid), "--dry_run", "--max_cells", "0"]) == 2
    assert "--max_cells must be an integer >= 1, got 0" in capsys.readouterr().err


def test_count_cells_matches_expand_and_bounds_a_huge_product():
    axes = {"a": [1, 2, 3], "b": [1, 2], "c": [1, 2]}
    assert count_cells(axes, [{"a": 9}], [{"a": 1, "b": 1}], stop=100) == (12 - 2 + 4, True)
    n, exact = count_cells({f"k{i}": list(range(10)) for i in range(12)}, stop=1000)  # 10^12: never enumerated
    assert n == 10**12 and exact
    assert count_cells({"a": list(range(2000))}, include=[{"a": 5}], stop=1000) == (2001, False)  # a repeated cell
    n, exact = count_cells({f"k{i}": list(range(10)) for i in range(12)}, exclude=[{"k0": 0}], stop=1000)
    assert n > 1000 and not exact


def _cell_with_results(tmp_path: Path, text: str):
    grid = load_grid(_grid(tmp_path, {"train.seed": [0]}))
    cell = grid.cells[0]
    folders.claim(grid.output_dir, "sweep")
    folders.claim(cell.folder, "run")
    cell.config.save(cell.folder / "config.json")
    (cell.folder / "results.json").write_text(text)
    return grid, cell


def test_a_truncated_results_json_is_not_finished_and_its_folder_is_kept_aside_when_the_cell_is_redone(tmp_path):
    whole = json.dumps({"format_version": 1, "config": {}, "conditions": {"real": {"metrics": {"accuracy": 50.0}}}, "samples": []})
    grid, cell = _cell_with_results(tmp_path, whole)
    assert finished(cell)
    truncated = whole[: len(whole) // 2]
    (cell.folder / "results.json").write_text(truncated)
    (cell.folder / "run.log").write_text("the user's log\n")
    assert not finished(cell) and "to run" in describe(grid)
    prepare_cells(grid)
    aside = [p for p in cell.folder.parent.iterdir() if p.name.startswith(f"{cell.name}.invalid-")]
    assert len(aside) == 1 and (aside[0] / "results.json").read_text() == truncated  # kept, byte for byte
    assert (aside[0] / "run.log").read_text() == "the user's log\n"
    assert (cell.folder / "cell.json").is_file() and not (cell.folder / "results.json").exists()
    # valid JSON without a run's results is not finished either
    (cell.folder / "results.json").write_text('{"config": {}}')
    assert not finished(cell)


def test_a_cell_folder_another_process_writes_refuses_the_sweep_naming_it(tmp_path, capsys):
    grid_file = _grid(tmp_path, {"train.seed": [0, 1]})
    cell = load_grid(grid_file).cells[0]
    folders.claim(tmp_path / "sweep", "sweep")
    folders.claim(cell.folder, "run")
    code = textwrap.dedent(f"""
        import sys
        from ecg_bench import run_lock
        with run_lock.hold({str(cell.folder)!r}, "run folder"):
            print("held", flush=True)
            sys.stdin.read()
    """)  # a run left by a killed sweep, still writing its cell
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "held"
        assert cli.main(["sweep", str(grid_file)]) == 2
    finally:
        p.stdin.close()
        p.wait()
    err = capsys.readouterr().err
    assert f"{cell.folder} is being written by pid {p.pid}" in err and "Traceback" not in err
    assert not (cell.folder / "cell.json").exists()  # nothing written into it


@pytest.mark.slow
def test_a_truncated_cell_is_redone_with_a_report_and_a_report_that_fails_fails_the_sweep(tmp_path, capsys, monkeypatch):
    grid = _grid(tmp_path, {"train.seed": [0]}, report={"examples": 0, "bootstrap_resamples": 100})
    assert cli.main(["sweep", str(grid)]) == 0
    cell = tmp_path / "sweep" / "seed=0"
    results = (cell / "results.json").read_text()
    (cell / "results.json").write_text(results[:100])  # a disk that filled up, a copy cut short
    capsys.readouterr()
    assert cli.main(["sweep", str(grid)]) == 0  # redone: not "finished before", and the report is written
    printed = capsys.readouterr().out
    assert "report:" in printed and (tmp_path / "sweep" / "report" / "index.html").is_file()
    assert json.loads((cell / "results.json").read_text())["training"]["steps"] == 4
    aside = [p for p in cell.parent.iterdir() if p.name.startswith("seed=0.invalid-")]
    assert len(aside) == 1 and (aside[0] / "results.json").read_text() == results[:100]

    from ecg_bench.errors import DataError
    from ecg_bench.evaluation import report

    def broken(*a, **k):
        raise DataError("the report's disk is full")

    monkeypatch.setattr(report, "write_report", broken)
    assert cli.main(["sweep", str(grid)]) == 1  # every cell finished, but no report: not a success
    assert "error: no report: the report's disk is full" in capsys.readouterr().err
