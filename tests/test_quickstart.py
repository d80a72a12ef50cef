"""The whole quickstart path (store -> QA -> folds -> ELM -> train -> evaluate) with the tiny LLM on CPU."""

from __future__ import annotations

import json

from ecg_bench import cli
from ecg_bench.presets import tiny


def test_quickstart_path_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny(str(out))
    args = ["quickstart", "--output_dir", str(out), "--model.llm", "tiny"]
    for dotted in ("data.source.num_patients", "data.source.records_per_patient", "data.segment_seconds",
                   "data.num_folds", "data.max_eval_items", "data.mapped.multi_turn_fraction", "model.encoder.type",
                   "model.encoder.num_tokens", "model.encoder.dim", "train.max_steps", "train.batch_size",
                   "eval.max_new_tokens"):  # fmt: skip
        obj = cfg
        for part in dotted.split("."):
            obj = getattr(obj, part)
        args += [f"--{dotted}", str(obj)]
    args += ["--data.mapped.question_types", *cfg.data.mapped.question_types]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    for cond in ("real", "zeros", "no_signal"):
        assert cond in printed

    res = json.loads((out / "results.json").read_text())
    assert res["config"]["model"]["llm"] == "tiny" and res["config"]["train"]["max_steps"] == 4
    assert res["training"]["steps"] == 4 and res["training"]["loss_first"] > 0
    assert set(res["conditions"]) == {"real", "zeros", "no_signal"}
    n = res["conditions"]["real"]["num_samples"]
    assert n >= cfg.data.max_eval_items  # multi-turn items add turns
    assert len(res["samples"]) == 3 * n
    assert all(0.0 <= c["metrics"]["acc_normalized"] <= 1.0 for c in res["conditions"].values())
    for c in res["conditions"].values():  # every metric with a patient-clustered CI, per question form and topic
        assert set(c["ci95"]) == set(c["metrics"]) and 1 <= c["clusters"] <= n
        assert set(c["per_type"]) == set(cfg.data.mapped.question_types) and c["per_topic"]
    assert "question_type / condition" in printed and "topic / condition" in printed
    ck = out / "checkpoints" / "final"
    # the CPU quickstart trains its small LLM from scratch, so the checkpoint holds the LLM, encoder and projector
    assert res["config"]["model"]["full_finetune"] and res["config"]["model"]["encoder"]["type"] == "conv1d"
    assert (ck / "llm" / "model.safetensors").exists() and not (ck / "adapter").exists()
    assert (ck / "projector.safetensors").exists() and (ck / "encoder.safetensors").exists()
    assert (out / "store" / "signals.npy").exists() and (out / "folds.json").exists()

    # evaluate the checkpoint again: same outputs, because the trained weights are what was saved
    assert (
        cli.main(["evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval"), "--eval.conditions", "real"]) == 0
    )
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    before = [s["prediction"] for s in res["samples"] if s["condition"] == "real"]
    assert [s["prediction"] for s in again["samples"]] == before


def test_store_is_reused_only_for_the_same_source_settings(tmp_path):
    import pytest

    from ecg_bench.errors import ConfigError
    from ecg_bench.pipeline import prepare_data

    cfg = tiny(str(tmp_path))
    first = prepare_data(cfg)
    mtime = (first.store.path / "signals.npy").stat().st_mtime_ns
    again = prepare_data(cfg)
    assert (again.store.path / "signals.npy").stat().st_mtime_ns == mtime  # reused
    cfg.data.source.num_patients = 15
    with pytest.raises(ConfigError, match="other settings"):  # never replaced silently
        prepare_data(cfg)
    assert (first.store.path / "signals.npy").stat().st_mtime_ns == mtime
    cfg.data.rebuild = True
    changed = prepare_data(cfg)
    assert changed.store.meta["source_settings"]["num_patients"] == 15
    assert changed.store.meta["num_records"] == 15 and len(changed.store) > len(first.store)
