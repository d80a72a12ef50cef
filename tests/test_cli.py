"""The CLI table, its help texts, and errors that name the bad value."""

from __future__ import annotations

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


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_option_of_every_command_is_documented(name):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    assert sub.description, f"{name} has no description"
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    for action in options:
        assert action.help and len(action.help) > 10, f"{name} {action.option_strings} has no help"
    if cli.COMMANDS[name].run_options:
        flags = {s for a in options for s in a.option_strings}
        for dotted, *_ in iter_leaf_fields(RunConfig):
            assert f"--{dotted}" in flags


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
                "--data.question_types",
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
    assert cfg["data"]["question_types"] == ["verify", "query"] and cfg["model"]["lora"] is False


def test_short_flags(capsys):
    assert cli.main(["config", "--llm", "org/some-model", "--encoder", "spectral", "--steps", "9"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["llm"] == "org/some-model" and cfg["model"]["encoder"] == "spectral"
    assert cfg["train"]["max_steps"] == 9


def test_presets(capsys):
    cli.main(["config"])
    assert json.loads(capsys.readouterr().out) == RunConfig().to_dict()
    quick = cli.COMMANDS["quickstart"].preset()
    gpu = __import__("ecg_bench.presets", fromlist=["quickstart"]).quickstart(device="cuda")
    assert (quick.model.llm, quick.model.full_finetune) == ("mini", True)  # no CUDA here
    assert (gpu.model.llm, gpu.model.full_finetune, gpu.model.lora) == ("smollm2-135m", False, True)


def test_unknown_names_and_bad_values_exit_2_with_a_clear_message(tmp_path, capsys):
    assert cli.main(["data", "--data.source", "ptbxl-typo", "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ptbxl-typo" in err and "synthetic" in err
    assert cli.main(["config", "--train.max_steps", "0", "--data.fold", "9"]) == 2
    err = capsys.readouterr().err
    assert "train.max_steps" in err and "data.fold" in err  # every problem, at once
    assert cli.main(["config", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_stepz: 3\n")
    assert cli.main(["config", "--config", str(bad)]) == 2
    assert "max_stepz" in capsys.readouterr().err


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


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ecg_bench", "data", "--output_dir", str(out), "--data.num_patients", "600",
           "--data.records_per_patient", "2", "--data.workers", "2"]  # fmt: skip
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
