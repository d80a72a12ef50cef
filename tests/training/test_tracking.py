"""Tracking: metrics.jsonl per step (resume appends without repeating a step), the validation loss on held-out
training patients, report_to trackers (TensorBoard read back for real; W&B / MLflow offline when installed),
run.log and readable progress when output goes to a file, and provenance in results.json."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch
from elm_fixtures import make_tiny_elm

from ecg_bench import logging_utils
from ecg_bench.config import EncoderOptions, RunConfig, choice
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.data.splits import holdout_patients, item_patients
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.training.tracking import METRICS_FILE, MetricsFile, read_metrics, report_to_problems
from ecg_bench.training.trainer import Trainer

STEP_KEYS = {"step", "loss", "lr", "lr_new", "grad_norm", "tokens", "label_tokens", "tokens_per_s", "step_s", "elapsed_s",
             "epoch"}  # fmt: skip


def _trainer(store, items, run_dir, val=None, **train):
    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    cfg.train.lr, cfg.train.encoder_lr = 2e-4, 1e-3
    for k, v in {"max_steps": 4, "batch_size": 4, "log_every": 1, **train}.items():
        setattr(cfg.train, k, v)
    elm, proc = make_tiny_elm()
    tr = Trainer(elm, proc, ConversationDataset(items, store, SignalRepresentation()), cfg, Path(run_dir) / "checkpoints")
    tr.run_dir = Path(run_dir)
    if val:
        tr.val_dataset = ConversationDataset(val, store, SignalRepresentation())
    return tr


@pytest.mark.slow
def test_every_step_is_recorded_once_and_a_resume_appends(tiny_store, tiny_items, tmp_path):
    train, val = holdout_patients(list(tiny_items), 0.25, seed=0)
    full = _trainer(tiny_store, train, tmp_path / "full", val, eval_every=2)
    full.train()
    recs = read_metrics(tmp_path / "full" / METRICS_FILE)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(STEP_KEYS <= r.keys() for r in recs)
    assert [r["loss"] for r in recs] == pytest.approx(full.losses)
    assert [("val_loss" in r) for r in recs] == [False, True, False, True]  # every 2 steps, and after the last
    assert all(r["tokens"] > r["label_tokens"] > 0 and r["tokens_per_s"] > 0 for r in recs)
    # the two groups' learning rates as used in the step (no warmup step at 4 steps: the peaks, then the cosine)
    assert (recs[0]["lr"], recs[0]["lr_new"]) == (pytest.approx(2e-4), pytest.approx(1e-3))
    assert recs[3]["lr"] < recs[2]["lr"] < recs[1]["lr"] < recs[0]["lr"]

    # killed during step 4, with a checkpoint at step 2: the resumed run drops step 3 and writes 3, 4 once
    run = tmp_path / "part"
    part = _trainer(tiny_store, train, run, val, eval_every=2, save_every=2)
    step_once = part.train_step

    def killed_at_4(step):
        if step == 3:
            raise KeyboardInterrupt
        return step_once(step)

    part.train_step = killed_at_4
    with pytest.raises(KeyboardInterrupt):
        part.train()
    assert [r["step"] for r in read_metrics(run / METRICS_FILE)] == [1, 2, 3]
    with open(run / METRICS_FILE, "a") as f:
        f.write('{"step": 4, "loss": 1.')  # a line cut by the kill
    resumed = _trainer(tiny_store, train, run, val, eval_every=2, resume_from=str(run / "checkpoints" / "step-000002"))
    resumed.train()
    got = read_metrics(run / METRICS_FILE)
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for a, b in zip(got, recs):  # exact resume: the same losses and validation losses as the uninterrupted run
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert ("val_loss" in a) == ("val_loss" in b)
        assert a.get("val_loss", 0.0) == pytest.approx(b.get("val_loss", 0.0), rel=1e-5)


@pytest.mark.slow
def test_validation_patients_are_held_out_and_the_loss_draws_no_randomness(tiny_store, tiny_items, tmp_path):
    items = list(tiny_items)
    train, val = holdout_patients(items, 0.25, seed=3)
    patients = lambda xs: {p for i, it in enumerate(xs) for p in item_patients(it, i)}  # noqa: E731
    assert val and train and not patients(train) & patients(val)
    assert len(patients(val)) == round(0.25 * len(patients(items)))
    assert holdout_patients(items, 0.25, seed=3) == (train, val) and holdout_patients(items, 0.25, seed=4) != (train, val)
    tr = _trainer(tiny_store, train, tmp_path, val)
    state = torch.get_rng_state()
    first = tr.validation_loss()
    assert torch.equal(state, torch.get_rng_state())
    assert first == tr.validation_loss() and first["val_tokens"] > 0 and 0 < first["val_loss"] < 20
    tr.train_step(0)
    assert tr.validation_loss()["val_loss"] != first["val_loss"]  # it measures the model being trained


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_same_metrics(tiny_store, tiny_items, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'ecg-bench[tracking]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr = _trainer(tiny_store, list(tiny_items)[:12], tmp_path, max_steps=3, batch_size=2, report_to=["tensorboard"])
    tr.train()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in read_metrics(tmp_path / METRICS_FILE)], rel=1e-6)
    assert {"train/grad_norm", "train/tokens_per_s", "train/lr"} <= set(acc.Tags()["scalars"])


@pytest.mark.slow
def test_wandb_offline_run(tiny_store, tiny_items, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'ecg-bench[tracking]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tr = _trainer(tiny_store, list(tiny_items)[:8], tmp_path, max_steps=2, batch_size=2, report_to=["wandb"])
    tr.train()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (tmp_path / "wandb_run_id").read_text().strip() in runs[0].name


@pytest.mark.slow
def test_mlflow_file_store_run(tiny_store, tiny_items, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'ecg-bench[tracking]')")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    tr = _trainer(tiny_store, list(tiny_items)[:8], tmp_path, max_steps=2, batch_size=2, report_to=["mlflow"])
    tr.train()
    run_id = (tmp_path / "mlflow_run_id").read_text().strip()
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").resolve().as_uri())
    history = client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(tr.losses, rel=1e-6)
    assert client.get_run(run_id).data.params["model.llm"] == "tiny"


def test_report_to_is_checked_before_any_work(monkeypatch):
    cfg = RunConfig()
    cfg.train.report_to = ["tensorboard", "comet"]
    assert any("train.report_to: unknown ['comet']" in p for p in cfg.problems())
    cfg.train.report_to = ["none", "wandb"]
    assert any("names none with other trackers" in p for p in cfg.problems())
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert report_to_problems(["wandb", "none"]) == [
        "train.report_to wandb: the wandb package is not installed (pip install 'ecg-bench[tracking]')"
    ]
    cfg = RunConfig()
    cfg.train.eval_every = 5
    assert any("train.eval_every 5 needs a held-out set" in p for p in cfg.problems())


def test_metrics_file_keeps_only_steps_up_to_the_resume_point(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3, 4)) + "garbage\n")
    m = MetricsFile(path, start_step=2)
    m.write({"step": 3, "loss": 9.0})
    m.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 0.5), (3, 9.0)]
    MetricsFile(path, start_step=0).close()  # a run started over from scratch
    assert read_metrics(path) == []


def test_progress_is_periodic_log_lines_without_carriage_returns(monkeypatch, request):
    monkeypatch.setattr(logging_utils, "PROGRESS_SECONDS", 0.0)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    # its own handler, whatever earlier tests (CLI calls, setup_logging) left on the package logger
    progress_log = logging.getLogger("ecg_bench.progress")
    monkeypatch.setattr(progress_log, "handlers", [Keep(logging.INFO)])
    monkeypatch.setattr(progress_log, "propagate", False)
    # setLevel, not assigning .level: loggers cache isEnabledFor answers and only setLevel clears those caches (a
    # stale "INFO is off" from an earlier test would silence every line here)
    request.addfinalizer(lambda level=progress_log.level: progress_log.setLevel(level))
    progress_log.setLevel(logging.INFO)
    bar = logging_utils.progress(range(3, 5), desc="train", initial=3, total=5)  # resumed at step 3 of 5
    assert isinstance(bar, logging_utils.LogProgress)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    assert len(lines) == 3  # after steps 4 and 5 (interval 0), then the closing count
    assert lines[0].startswith("train: 4/5 (80 %), ") and lines[0].endswith(" it/s, loss=0.5")
    assert lines[1].startswith("train: 5/5 (100 %), ") and lines[2].startswith("train: 5/5 (100 %), ")
    assert all("\r" not in x for x in lines)
    silent = logging_utils.LogProgress(range(10), desc="fast", every=3600)
    lines.clear()
    list(silent)
    assert not lines  # a loop shorter than the interval logs nothing


@pytest.mark.slow
def test_a_run_redirected_to_a_file_writes_run_log_metrics_and_provenance(tmp_path, capsys, monkeypatch):
    """The CLI as a user runs it with 2> file: progress as log lines, run.log, metrics.jsonl, versions and commit."""
    from ecg_bench import cli
    from ecg_bench.presets import tiny

    monkeypatch.setattr(logging_utils, "PROGRESS_SECONDS", 0.0)
    package_log = logging.getLogger("ecg_bench")
    monkeypatch.setattr(package_log, "handlers", [])  # setup_logging adds a handler on this test's (captured) stderr
    cfg = tiny(str(tmp_path / "run"))
    cfg.save(tmp_path / "tiny.json")
    args = ["run", "--config", str(tmp_path / "tiny.json"), "--eval.conditions", "real", "--train.val_fraction", "0.25",
            "--train.eval_every", "2", "--train.report_to", "tensorboard"]  # fmt: skip
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    run = tmp_path / "run"
    assert "\r" not in err and "train: 2/4 (50 %)" in err
    log_text = (run / "run.log").read_text()
    assert "step 4/4 loss" in log_text and "step 4/4 validation loss" in log_text and "wrote " in log_text
    assert "\r" not in log_text
    recs = read_metrics(run / METRICS_FILE)
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and "val_loss" in recs[3]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    res = json.loads((run / "results.json").read_text())
    env = res["environment"]
    assert env["ecg_bench"] == "0.1.0" and env["libraries"]["torch"] == torch.__version__
    import peft
    import transformers

    assert env["libraries"]["transformers"] == transformers.__version__ and env["libraries"]["peft"] == peft.__version__
    src = Path(logging_utils.__file__).parent
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the code runs from a git checkout (not an installed wheel)
        assert env["git"]["commit"] == head.stdout.strip()
    assert res["training"]["val_items"] > 0 and res["training"]["steps"] == 4
