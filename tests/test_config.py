"""Config values: one coercion for files and flags, range checks, every problem at once, layering."""

from __future__ import annotations

import json
import math

import pytest

from ecg_bench.config import RunConfig, build, coerce, from_dict, segment_problems
from ecg_bench.errors import ConfigError
from ecg_bench.presets import quickstart


def _problems(fn) -> list[str]:
    with pytest.raises(ConfigError) as e:
        fn()
    return e.value.problems


# ------------------------------------------------------------------ coerce


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        (5, int, 5), ("5", int, 5), (" -3 ", int, -3), ("1e3", int, 1000), (5.0, int, 5),
        (2, float, 2.0), ("1e-3", float, 1e-3), (0.5, float, 0.5), ("-5", float, -5.0),
        (True, bool, True), ("false", bool, False), ("YES", bool, True), ("0", bool, False), ("On", bool, True),
        ("x", str, "x"), (2024, str, "2024"),
        (["a", "b"], list[str], ["a", "b"]), (["1", 2], list[int], [1, 2]), ([], list[str], []),
    ],
)  # fmt: skip
def test_coerce_accepts(value, hint, expected):
    got = coerce(value, hint, "here")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "value, hint",
    [
        (2.5, int), ("ten", int), (True, int), ("2.5", int), (None, int), ([1], int), (float("nan"), int),
        ("nan", float), (float("nan"), float), ("inf", float), (float("-inf"), float), ("-Infinity", float),
        (True, float), ("abc", float), (None, float), ("", float),
        ("maybe", bool), (1, bool), (0, bool), (None, bool), ("", bool),
        (True, str), (1.5, str), (None, str), (["a"], str), ({"a": 1}, str),
        ("verify", list[str]), (["a", 1.5], list[str]), ([1, "x"], list[int]),
    ],
)  # fmt: skip
def test_coerce_refuses_naming_where(value, hint):
    problems = _problems(lambda: coerce(value, hint, "train.thing"))
    assert problems and all(p.startswith("train.thing") for p in problems)


def test_coerce_lists_every_bad_element():
    problems = _problems(lambda: coerce(["1", "x", 2.5], list[int], "data.mix_max_items"))
    assert problems == ["data.mix_max_items[1]: expected an integer, got 'x'",
                        "data.mix_max_items[2]: expected an integer, got 2.5 (float)"]  # fmt: skip


# ------------------------------------------------------------------ files


def test_yaml_lr_1e_3_is_a_float(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("train:\n  lr: 1e-3\n  encoder_lr: 2E-4\n")  # PyYAML reads both as strings
    cfg = RunConfig.load(f).validate()
    assert cfg.train.lr == 1e-3 and cfg.train.encoder_lr == 2e-4 and isinstance(cfg.train.lr, float)


def test_string_false_is_false(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"model": {"full_finetune": "false", "lora": "true"}}))
    cfg = RunConfig.load(f)
    assert cfg.model.full_finetune is False and cfg.model.lora is True


def test_checkpoint_config_with_bad_values_lists_all_of_them(tmp_path):
    d = RunConfig().to_dict()
    d["train"]["max_steps"] = "ten"
    d["train"]["batch_size"] = "5"  # integral string: fine
    d["model"]["lora_r"] = 2.5
    d["eval"]["metrics"] = "accuracy"
    d["data"]["nope"] = 1
    f = tmp_path / "config.json"
    f.write_text(json.dumps(d))
    problems = _problems(lambda: RunConfig.load(f))
    text = "\n".join(problems)
    assert len(problems) == 4, problems
    assert "train.max_steps: expected an integer, got 'ten'" in text and "model.lora_r: expected an integer, got 2.5" in text
    assert "eval.metrics: expected a list" in text and "unknown key(s) ['nope']" in text
    assert all(p.startswith(str(f)) for p in problems)
    d["train"]["max_steps"], d["model"]["lora_r"], d["eval"]["metrics"] = 3, 8, ["accuracy"]
    del d["data"]["nope"]
    f.write_text(json.dumps(d))
    cfg = RunConfig.load(f).validate()
    assert cfg.train.batch_size == 5 and cfg.train.max_steps == 3


@pytest.mark.parametrize("text, fragment", [("train: [1, 2\n", "not a readable YAML"), ("- a\n- b\n", "expected a mapping"),
                                            ("train: 5\n", "train: expected a mapping")])  # fmt: skip
def test_unreadable_or_misshapen_files_are_config_errors(tmp_path, text, fragment):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    problems = _problems(lambda: RunConfig.load(f))
    assert str(f) in problems[0] and fragment in problems[0]


def test_json_that_is_not_json(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("{not json")
    assert "expected a run config (JSON object), got invalid JSON at line 1 column 2" in _problems(lambda: RunConfig.load(f))[0]


def test_from_dict_nested_and_roundtrip():
    cfg = from_dict(RunConfig, RunConfig().to_dict())
    assert cfg == RunConfig()


# ------------------------------------------------------------------ range checks


BAD = [
    ("train.lr", "nan", "train.lr"), ("train.lr", "0", "train.lr must be positive"),
    ("train.encoder_lr", "-1", "train.encoder_lr must be positive"),
    ("train.min_lr_ratio", "-5", "train.min_lr_ratio must be in [0, 1]"), ("train.min_lr_ratio", "1.5", "min_lr_ratio"),
    ("train.weight_decay", "-1", "train.weight_decay must be >= 0"), ("train.log_every", "0", "train.log_every must be >= 1"),
    ("train.save_every", "-1", "train.save_every must be >= 0"), ("train.num_threads", "-1", "train.num_threads must be >= 0"),
    ("train.device", "tpu", "train.device must be auto, cpu, cuda, cuda:N or mps"), ("train.device", "cuda:x", "train.device"),
    ("train.seed", "-1", "train.seed"), ("data.seed", "-1", "data.seed"),
    ("data.max_train_items", "-5", "data.max_train_items must be >= 0"), ("data.max_eval_items", "-1", "data.max_eval_items"),
    ("data.source.records_per_patient", "0", "data.source (synthetic): records_per_patient must be >= 1"),
    ("data.source.num_patients", "0", "data.source (synthetic): num_patients must be >= 1"),
    ("data.segment_seconds", "0.001", "at least 16 are needed"), ("data.segment_seconds", "nan", "data.segment_seconds"),
    ("data.segment_seconds", "-2", "data.segment_seconds must be positive"),
    ("data.segment_seconds", "2.001", "nearest valid: 2 or 2.004"), ("data.target_fs", "0", "data.target_fs must be positive"),
    ("model.elm", {"type": "encoder_free", "patch_size": "0"}, "model.elm (encoder_free): patch_size must be >= 1"),
    ("model.encoder.dim", "0", "model.encoder (conv1d): dim must be >= 1"),
    ("model.patch_size", "0", "unknown key(s) ['patch_size'] for model; valid:"),
    ("model.lora_alpha", "0", "model.lora_alpha must be positive"), ("model.lora_dropout", "1", "model.lora_dropout"),
    ("model.lora_dropout", "-0.1", "model.lora_dropout"), ("eval.batch_size", "0", "eval.batch_size must be >= 1"),
    ("eval.max_new_tokens", "0", "eval.max_new_tokens must be >= 1"), ("eval.metrics", [{"type": "bertscore", "num_layers": "-1"}], "num_layers must be >= 0"),
    ("eval.conditions", ["real", {"type": "noise", "snr_db": "200"}], "eval.conditions[1] (noise): snr_db must be"),
    ("eval.conditions", [{"type": "leads", "leads": ["V7"]}], "unknown leads ['V7']"),
    ("data.source", {"type": "ptbxl", "folder": "records250"}, "data.source (ptbxl): folder must be"),
    ("data.mapped", {"type": "ecg_qa_ptbxl", "qa_variant": "fancy"}, "data.mapped (ecg_qa_ptbxl): qa_variant must be"),
    ("eval.bootstrap_resamples", "0", "eval.bootstrap_resamples must be in [1, 1000000]"),
    ("data.mix_max_items", ["-1"], "data.mix_max_items"),
]  # fmt: skip


@pytest.mark.parametrize("dotted, value, fragment", BAD, ids=[f"{d}={v}" for d, v, _ in BAD])
def test_each_bad_value_is_refused(dotted, value, fragment):
    problems = _problems(
        lambda: build(RunConfig(), overrides={dotted: value, **({"data.mix": ["a"]} if "mix" in dotted else {})})
    )
    assert any(fragment in p for p in problems), problems


def test_good_values_pass():
    cfg = build(RunConfig(), overrides={"train.device": "cuda:1", "train.min_lr_ratio": "1", "data.segment_seconds": "2.004",
                                        "model.lora_dropout": "0.1", "train.lr": "5e-5"})  # fmt: skip
    assert cfg.train.device == "cuda:1" and cfg.data.segment_seconds == 2.004 and cfg.train.lr == 5e-5
    assert build(RunConfig(), overrides={"data.segment_seconds": "0.064"}).data.segment_seconds == 0.064  # 16 samples


def test_segment_length_must_be_whole_samples():
    assert segment_problems(2.0, 250) == [] and segment_problems(0.1 * 3, 10 * 16) == []
    (msg,) = segment_problems(2.001, 360)
    nearest = [float(v) for v in msg.rsplit("nearest valid: ", 1)[1].split(" or ")]
    assert all(segment_problems(v, 360) == [] for v in nearest) and nearest[0] < 2.001 < nearest[1]


def test_every_problem_of_every_section_at_once():
    problems = _problems(lambda: build(RunConfig(), overrides={
        "train.lr": "nan", "data.source.num_patients": "ten", "model.lora_r": "2.5", "data.source.records_per_patient": "0",
        "model.encoder.dim": "0", "train.min_lr_ratio": "-5", "eval.batch_size": "0", "train.device": "tpu"}))  # fmt: skip
    for name in ("--train.lr", "--data.source.num_patients", "--model.lora_r", "records_per_patient must be", "dim must be",
                 "train.min_lr_ratio", "eval.batch_size", "train.device"):  # fmt: skip
        assert any(name in p for p in problems), (name, problems)


def test_values_set_from_python_are_typed_too():
    cfg = RunConfig()
    cfg.train.lr, cfg.train.max_steps, cfg.model.lora = "1e-3", "7", "no"
    cfg.validate()
    assert (cfg.train.lr, cfg.train.max_steps, cfg.model.lora) == (1e-3, 7, False)
    cfg.train.lr, cfg.train.batch_size = float("nan"), 2.5
    problems = _problems(cfg.validate)
    assert any("train.lr" in p for p in problems) and any("train.batch_size" in p for p in problems)


# ------------------------------------------------------------------ layering


def test_partial_file_is_layered_over_the_preset(tmp_path):
    f = tmp_path / "partial.yaml"
    f.write_text("train:\n  max_steps: 9\nmodel:\n  encoder:\n    num_tokens: 3\n")
    preset = quickstart("cpu")
    cfg = build(quickstart("cpu"), f, {"train.max_steps": "11"})
    assert cfg.train.max_steps == 11  # flag > file
    assert cfg.model.encoder.num_tokens == 3 and cfg.model.encoder.type == "spectral"  # file > preset, within the choice
    assert cfg.model.llm == preset.model.llm == "mini" and cfg.train.batch_size == preset.train.batch_size  # preset kept
    assert cfg.data.source.num_patients == preset.data.source.num_patients and cfg.model.encoder.hidden == preset.model.encoder.hidden


def test_build_collects_file_flag_and_check_problems(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: abc\n")
    problems = _problems(lambda: build(RunConfig(), f, {"train.max_steps": "x"}, checks=[lambda c: ["from a check"]]))
    assert len(problems) == 3 and "train.lr" in problems[0] and "--train.max_steps" in problems[1]
    assert problems[2] == "from a check"
    assert math.isclose(RunConfig().train.lr, 2e-4)


def test_default_output_dir_is_per_source_so_datasets_never_share_it():
    """README's `ecg-bench data --data.source ptbxl ...` (no --output_dir) must not land in the quickstart's folder."""
    from ecg_bench.config import build
    from ecg_bench.presets import quickstart

    assert build(RunConfig(), overrides={"data.source": "ptbxl"}).output_dir == "runs/ptbxl"
    assert build(RunConfig()).output_dir == "runs/synthetic"
    assert build(quickstart("cpu")).output_dir == "runs/quickstart"
    assert RunConfig().validate().output_dir == "runs/synthetic"


# ------------------------------------------------------------------ component options and older configs

def test_changing_a_choice_drops_the_previous_components_options():
    base = build(RunConfig(), overrides={"model.encoder.type": "spectral", "model.encoder.hidden": "32"})
    cfg = build(base, overrides={"model.encoder.type": "conv1d", "model.encoder.dim": "16"})
    assert cfg.model.encoder.type == "conv1d" and cfg.model.encoder.dim == 16 and not hasattr(cfg.model.encoder, "hidden")


def test_a_condition_twice_with_other_options_gets_a_distinct_label():
    from ecg_bench.config import condition_label

    cfg = build(RunConfig(), overrides={"eval.conditions": ["real", {"type": "noise", "snr_db": 5}, {"type": "noise", "snr_db": 20}]})
    labels = [condition_label(c, cfg.eval.conditions) for c in cfg.eval.conditions]
    assert labels == ["real", "noise(snr_db=5.0)", "noise(snr_db=20.0)"]
    problems = _problems(lambda: build(RunConfig(), overrides={"eval.conditions": ["real", "real"]}))
    assert any("names a condition twice" in p for p in problems)
