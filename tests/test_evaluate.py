"""Runs never write over another run: evaluate writes a new folder, reads paths relative to the checkpoint,
builds nothing where a received checkpoint points, and refuses to score a model on patients it was trained on."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from ecg_bench import cli
from ecg_bench.presets import tiny
from ecg_bench.training.manifest import write_manifest


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch):
    package_log = logging.getLogger("ecg_bench")  # the CLI's setup_logging stops propagation: undo it afterwards
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(package_log, attr, list(package_log.handlers) if attr == "handlers" else getattr(package_log, attr))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run: (run folder, checkpoint folder, bytes of its results.json and config.json)."""
    out = tmp_path_factory.mktemp("train") / "run"
    cfg = tiny(str(out))
    cfg.train.max_steps = 2
    cfg.save(out.parent / "tiny.json")
    assert cli.main(["run", "--config", str(out.parent / "tiny.json"), "--eval.conditions", "real"]) == 0
    ck = out / "checkpoints" / "final"
    return out, ck


def _files(run):
    return {name: (run / name).read_bytes() for name in ("results.json", "config.json", "folds.json")}


def test_evaluate_writes_a_new_folder_and_never_the_training_runs_files(trained, capsys):
    run, ck = trained
    before = _files(run)
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--eval.conditions", "real"]) == 0
    evals = sorted(ck.glob("eval-*"))
    assert len(evals) == 1 and (evals[0] / "results.json").is_file()
    assert _files(run) == before  # the training run's results.json, config.json and folds.json are untouched
    res = json.loads((evals[0] / "results.json").read_text())
    assert res["data"]["store"] == str(run / "store")  # the training run's store, read as it is
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--eval.conditions", "real", "--output_dir", str(run)]) == 2
    assert "made by ecg-bench as a run folder, not an evaluation folder" in capsys.readouterr().err
    assert _files(run) == before
    # a new run never writes over a finished run's results either
    assert cli.main(["run", "--config", str(run / "config.json"), "--train.max_steps", "1"]) == 2
    assert "already holds a finished run's results" in capsys.readouterr().err
    assert _files(run) == before


def test_evaluate_on_a_fold_the_model_was_trained_on_is_refused(trained, capsys):
    run, ck = trained
    record = json.loads((ck / "training_data.json").read_text())
    assert record["fold"] == 0 and record["num_folds"] == 3 and len(record["patients_sha256_16"]) == 8
    assert cli.main(["evaluate", "--checkpoint", str(ck), "--eval.conditions", "real", "--data.fold", "1"]) == 2
    err = capsys.readouterr().err
    assert "was trained on fold 0 of 3" in err and "of evaluation fold 1 of 3 were in its training data" in err
    assert "--data.fold 0" in err and "Traceback" not in err


def test_a_received_checkpoint_cannot_make_evaluate_build_or_delete_elsewhere(trained, tmp_path, monkeypatch, capsys):
    """Its config.json names folders of the receiver's (absolute) and relative ones: evaluate touches none of them."""
    _, ck = trained
    got = tmp_path / "received"
    shutil.copytree(ck, got, ignore=shutil.ignore_patterns("eval-*"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    cfg = json.loads((got / "config.json").read_text())
    cfg["output_dir"], cfg["data"]["store_dir"] = str(mine), str(mine)
    (got / "config.json").write_text(json.dumps(cfg))
    write_manifest(got)  # a received checkpoint, whole as its manifest says
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli.main(["evaluate", "--checkpoint", str(got), "--eval.conditions", "real"]) == 0
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.txt"] and (mine / "thesis.txt").read_text() == "years of work"
    (ev,) = got.glob("eval-*")
    assert (ev / "store" / "signals.npy").is_file()  # the store was built inside the evaluation folder
    # relative paths are read against the checkpoint, never the current folder
    cfg["output_dir"], cfg["data"]["store_dir"] = "runs/quickstart", "runs/quickstart/store"
    (got / "config.json").write_text(json.dumps(cfg))
    write_manifest(got)
    assert cli.main(["evaluate", "--checkpoint", str(got), "--eval.conditions", "real"]) == 0
    assert list(work.iterdir()) == [] and not (got / "runs").exists()
    assert len(list(got.glob("eval-*"))) == 2


def test_checkpoint_config_holds_absolute_paths(trained):
    run, ck = trained
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["output_dir"] == str(run.resolve())
