"""The CLI table, its help texts, and errors that name the bad value."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from ecg_bench import cli
from ecg_bench.config import RunConfig, iter_leaf_fields


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "ecg_bench.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "quickstart" in out and "evaluate" in out


def test_every_option_of_every_component_is_documented():
    from ecg_bench.config import KINDS, field_docs

    for base in KINDS:
        for name, cls in base.get_known_choices().items():
            docs = field_docs(cls)
            for f in dataclasses.fields(cls):
                assert docs.get(f.name), f"{base.kind} {name}: option {f.name} has no docstring"


def test_every_config_field_has_a_docstring():
    for dotted, _, _, doc in iter_leaf_fields(RunConfig):
        assert doc, f"config field {dotted} has no docstring"


def test_overrides_and_config_file(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  max_steps: 7\nmodel:\n  llm: tiny\n")
    assert (
        cli.main(
            [
                "config",
                "--config",
                str(f),
                "--train.lr",
                "0.5",
                "--data.mapped.question_types",
                "verify",
                "query",
                "--model.lora",
                "false",
            ]
        )
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["max_steps"] == 7 and cfg["train"]["lr"] == 0.5 and cfg["model"]["llm"] == "tiny"
    assert cfg["data"]["mapped"]["question_types"] == ["verify", "query"] and cfg["model"]["lora"] is False


def test_component_flags_choose_and_configure(capsys):
    assert cli.main(["config", "--model.encoder", "spectral", "--model.encoder.hidden", "64", "--eval.conditions", "real",
                     "shuffled", "{type: noise, snr_db: 5}"]) == 0  # fmt: skip
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["encoder"] == {"type": "spectral", "freeze": False, "dim": 128, "num_tokens": 4, "hidden": 64}
    assert [c["type"] for c in cfg["eval"]["conditions"]] == ["real", "shuffled", "noise"]
    assert cfg["eval"]["conditions"][2]["snr_db"] == 5.0
    # an option of another encoder is refused, the valid ones listed
    assert cli.main(["config", "--model.encoder.type", "spectral", "--model.encoder.patch_size", "25"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['patch_size'] for model.encoder (spectral); valid: ['dim', 'freeze', 'hidden', 'num_tokens']" in err


def test_list_details_prints_each_components_options(capsys):
    assert cli.main(["list", "--details", "encoders"]) == 0
    out = capsys.readouterr().out
    assert "spectral:" in out and "hidden (int, default 256): Width of each token's MLP's hidden layer." in out
    assert "patch_size (int, default 50)" in out
    assert cli.main(["list", "--details", "conditions"]) == 0
    assert "snr_db (float, default 10.0)" in capsys.readouterr().out
    assert cli.main(["list", "--details", "gizmos"]) == 2
    assert "unknown kind 'gizmos'" in capsys.readouterr().err


def test_presets(capsys):
    cli.main(["config"])
    assert json.loads(capsys.readouterr().out) == RunConfig().validate().to_dict()  # output_dir runs/{source} resolved
    quick = cli.COMMANDS["quickstart"].preset()
    gpu = __import__("ecg_bench.presets", fromlist=["quickstart"]).quickstart(device="cuda")
    assert (quick.model.llm, quick.model.full_finetune) == ("mini", True)  # no CUDA here
    assert (gpu.model.llm, gpu.model.full_finetune, gpu.model.lora) == ("smollm2-135m", False, True)


def test_unknown_names_and_bad_values_exit_2_with_a_clear_message(tmp_path, capsys):
    assert cli.main(["data", "--data.source", "ptbxl-typo", "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ptbxl-typo" in err and "synthetic" in err
    assert cli.main(["config", "--train.max_steps", "-1", "--data.fold", "9"]) == 2
    err = capsys.readouterr().err
    assert "train.max_steps" in err and "data.fold" in err  # every problem, at once
    assert cli.main(["config", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_stepz: 3\n")
    assert cli.main(["config", "--config", str(bad)]) == 2
    assert "max_stepz" in capsys.readouterr().err


def test_a_command_refuses_the_options_it_does_not_use(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "--train.lr", "0.1", "--output_dir", str(tmp_path / "r")])
    assert e.value.code == 2 and "unrecognized arguments: --train.lr" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_all_unknown_names_reported_before_any_work(tmp_path, capsys):
    args = ["run", "--output_dir", str(tmp_path / "r"), "--model.encoder", "nope", "--eval.metrics", "accuracy", "cider"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "unknown encoder 'nope'" in err and "conv1d" in err and "unknown metric 'cider'" in err and "meteor" in err
    assert not (tmp_path / "r" / "store").exists()  # nothing was built


def test_list_shows_registries(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "conv1d" in out and "llava" in out and "smollm2-135m" in out and "bertscore" in out


# ------------------------------------------------------------------ checked values (issue 8, item 4)

BAD_FLAGS = [
    (["--train.lr", "nan"], "--train.lr: expected a finite number, got 'nan'"),
    (["--train.min_lr_ratio", "-5"], "train.min_lr_ratio must be in [0, 1], got -5.0"),
    (["--train.log_every", "0"], "train.log_every must be >= 1"),
    (["--data.segment_seconds", "0.001"], "at least 16 are needed"),
    (["--data.segment_seconds", "nan"], "--data.segment_seconds: expected a finite number"),
    (["--data.segment_seconds", "2.001", "--data.target_fs", "250"],
     "500.25 samples, not a whole number (the store would silently round it); nearest valid: 2 or 2.004"),
    (["--train.num_threads", "-1"], "train.num_threads must be >= 0"),
    (["--data.max_train_items", "-5"], "data.max_train_items must be >= 0"),
    (["--train.weight_decay", "-1"], "train.weight_decay must be >= 0"),
    (["--train.device", "tpu"], "train.device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    (["--model.encoder.type", "patch", "--model.encoder.patch_size", "0"], "model.encoder (patch): patch_size must be >= 1"),
    (["--data.source.records_per_patient", "0"], "data.source (synthetic): records_per_patient must be >= 1"),
    (["--data.target_fs", "1000"], "data.target_fs 1000 Hz is above the synthetic source's own rate of 500 Hz"),
    (["--data.source", "ptbxl", "--data.source.folder", "records100"], "above the ptbxl source's own rate of 100 Hz"),
    (["--model.lora_r", "2.5"], "--model.lora_r: expected an integer, got 2.5"),
    (["--model.full_finetune", "maybe"], "--model.full_finetune: expected true or false, got 'maybe'"),
    (["--model.llm", "nope"], "model.llm 'nope' is not a known short name (mini, smollm2-135m, tiny)"),
]  # fmt: skip


CASES = [(c, f, m) for f, m in BAD_FLAGS for c in ("quickstart", "data", "config")
         if c != "data" or all(x.startswith("--data.") for x in f if x.startswith("--"))]  # data takes only data flags


@pytest.mark.parametrize("command, flags, message", CASES, ids=[f"{c} {' '.join(f)}" for c, f, _ in CASES])
def test_bad_values_exit_2_before_any_work(tmp_path, capsys, command, flags, message):
    out = tmp_path / "run"
    assert cli.main([command, "--output_dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid configuration") and message in err, err
    assert not out.exists()  # no store, no config.json: nothing was done


def test_all_problems_of_all_sections_reported_together(tmp_path, capsys):
    flags = ["--train.lr", "nan", "--train.min_lr_ratio", "-5", "--data.source.records_per_patient", "0",
             "--train.device", "tpu", "--model.elm.type", "encoder_free", "--model.elm.patch_size", "0",
             "--eval.batch_size", "0", "--model.llm", "nope", "--model.projector", "nope"]  # fmt: skip
    assert cli.main(["quickstart", "--output_dir", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    for name in ("train.lr", "unknown projector 'nope'"):  # type and name problems come first, before range checks
        assert name in err, name
    flags = [f for f in flags if f not in ("--train.lr", "nan", "--model.projector")][:-1]
    assert cli.main(["quickstart", "--output_dir", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    for name in ("train.min_lr_ratio", "data.source (synthetic): records_per_patient", "train.device",
                 "model.elm (encoder_free): patch_size", "eval.batch_size", "model.llm 'nope'"):  # fmt: skip
        assert name in err, name
    assert err.count("\n  - ") == 6


def test_yaml_and_json_values_are_coerced_like_flags(tmp_path, capsys):
    f = tmp_path / "r.yaml"
    f.write_text("train:\n  lr: 1e-3\nmodel:\n  full_finetune: 'false'\n  lora: 'no'\n")
    assert cli.main(["config", "--config", str(f)]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["train"]["lr"] == 1e-3 and cfg["model"]["full_finetune"] is False and cfg["model"]["lora"] is False
    j = tmp_path / "r.json"
    j.write_text(json.dumps({"train": {"lr": "nan", "max_steps": "ten"}, "model": {"lora_r": 2.5}}))
    assert cli.main(["config", "--config", str(j)]) == 2
    err = capsys.readouterr().err
    assert "train.lr: expected a finite number" in err and "train.max_steps: expected an integer, got 'ten'" in err
    assert "model.lora_r: expected an integer, got 2.5" in err


def test_checkpoint_config_with_bad_values_exits_2(tmp_path, capsys):
    from elm_fixtures import write_config_only_checkpoint

    d = RunConfig().to_dict()
    d["train"]["max_steps"], d["model"]["lora_r"], d["train"]["batch_size"] = "ten", 2.5, "5"
    d["output_dir"] = str(tmp_path / "out")
    ckpt = write_config_only_checkpoint(tmp_path / "ckpt", d)
    assert cli.main(["evaluate", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "train.max_steps: expected an integer, got 'ten'" in err and "model.lora_r: expected an integer, got 2.5" in err
    assert "batch_size" not in err  # "5" is a fine integer
    assert not (tmp_path / "out").exists()


def test_llm_spec_is_checked_without_loading(tmp_path, capsys):
    for llm in ("tiny", "org/some-model", "Qwen/Qwen2.5-0.5B-Instruct", str(tmp_path)):
        assert cli.main(["config", "--model.llm", llm]) == 0, llm
    capsys.readouterr()
    for llm in ("nope", "org/", "a/b/c", "org/na me", str(tmp_path / "missing.gguf"), str(tmp_path / "missing")):
        assert cli.main(["config", "--model.llm", llm]) == 2, llm
        err = capsys.readouterr().err
        assert repr(llm) in err and ("smollm2-135m" in err or "GGUF file not found" in err), err


def test_quickstart_partial_config_keeps_the_preset(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cfg, train=True):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr("ecg_bench.pipeline.run", fake_run)
    monkeypatch.setattr("ecg_bench.cli.run._print_results", lambda results, cfg: None)
    f = tmp_path / "partial.yaml"
    f.write_text("train:\n  max_steps: 9\n  lr: 3e-4\n")
    assert cli.main(["quickstart", "--config", str(f), "--train.lr", "5e-4", "--output_dir", str(tmp_path / "q")]) == 0
    cfg, preset = seen["cfg"], cli.COMMANDS["quickstart"].preset()
    assert cfg.train.max_steps == 9 and cfg.train.lr == 5e-4  # file over preset, flag over file
    assert (cfg.model.llm, cfg.model.encoder, cfg.data.source) == (preset.model.llm, preset.model.encoder,
                                                                   preset.data.source)  # fmt: skip


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ecg_bench", "data", "--output_dir", str(out), "--data.source.num_patients", "600",
           "--data.source.records_per_patient", "2", "--data.workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    settings = out / "store.partial" / "settings.json"
    deadline = time.time() + 120
    while not settings.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1] == "interrupted; run the same command again to resume"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
