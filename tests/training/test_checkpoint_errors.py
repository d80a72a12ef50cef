"""Corrupt artifacts (weights, checkpoint files, GGUF models) are refused with an error naming the file.

Each case is a tiny crafted file; the forged-size cases check that the refusal happens before any read or
allocation of what the header claims.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from elm_fixtures import make_tiny_elm
from safetensors.torch import save_file

from ecg_bench import cli
from ecg_bench.config import RunConfig
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.llm import check_gguf, load_llm
from ecg_bench.safe_files import load_safetensors, read_json_file
from ecg_bench.training.checkpoint import load_checkpoint, read_trainer_state, save_checkpoint
from ecg_bench.training.manifest import write_manifest
from ecg_bench.config import ConditionOptions, EncoderOptions, choice

# ---------------------------------------------------------------- safetensors


@pytest.fixture
def good_file(tmp_path):
    f = tmp_path / "good.safetensors"
    save_file({"w": torch.arange(64, dtype=torch.float32).reshape(8, 8)}, str(f))
    return f


@pytest.fixture
def no_library_read(monkeypatch):
    """Fail the test if the safetensors library is asked to read: the refusal must come from the size check."""
    import safetensors.torch

    def forbidden(*a, **k):
        raise AssertionError("safetensors.load_file was called on a file that should have been refused first")

    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)


def test_a_good_file_loads(good_file):
    assert load_safetensors(good_file)["w"].shape == (8, 8)


def test_a_header_claiming_a_terabyte_is_refused_before_reading(tmp_path, no_library_read):
    f = tmp_path / "huge.safetensors"
    f.write_bytes(struct.pack("<Q", 10**12) + b'{"w": {}}')
    with pytest.raises(DataError, match=r"huge\.safetensors: header claims 1000000000000 bytes but the file has 9"):
        load_safetensors(f)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"abc", "too short to be a safetensors file"),
        (b"this is not a safetensors file at all", "header claims"),
        (struct.pack("<Q", 4) + b"\xff\xfe{]", "header is not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
    ids=["short", "garbage", "bad-json", "not-object"],
)
def test_garbage_is_refused_naming_the_file(tmp_path, no_library_read, content, message):
    f = tmp_path / "bad.safetensors"
    f.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        load_safetensors(f)
    assert str(f) in str(e.value)


def test_a_truncated_file_is_refused_naming_the_tensor(tmp_path, good_file, no_library_read):
    f = tmp_path / "cut.safetensors"
    f.write_bytes(good_file.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"cut\.safetensors: tensor 'w' ends at byte 256 .* holds 246 \(truncated file\)"):
        load_safetensors(f)


def test_the_libraries_own_errors_are_wrapped(tmp_path, good_file):
    raw = bytearray(good_file.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    header = raw[8 : 8 + n].replace(b"F32", b"Q99")  # framing fine, dtype unknown to safetensors
    f = tmp_path / "dtype.safetensors"
    f.write_bytes(bytes(raw[:8]) + header + bytes(raw[8 + n :]))
    with pytest.raises(DataError, match=r"dtype\.safetensors: not a readable safetensors file"):
        load_safetensors(f)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad):
    f = tmp_path / "nan.safetensors"
    t = torch.zeros(3, 4)
    t[1, 2] = bad
    save_file({"ok": torch.zeros(2), "proj.weight": t}, str(f))
    with pytest.raises(DataError, match=r"nan\.safetensors: tensor 'proj\.weight' holds 1 NaN/infinite value\(s\) of 12"):
        load_safetensors(f)


# ---------------------------------------------------------------- JSON


def test_json_that_is_not_json_names_file_line_and_column(tmp_path):
    f = tmp_path / "config.json"
    f.write_text('{\n  "train": {"lr": 0.1,,}\n}\n')
    with pytest.raises(
        ConfigError, match=r"config\.json: expected a run config \(JSON object\), got invalid JSON at line 2 column"
    ):
        RunConfig.load(f)
    f.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xff")
    with pytest.raises(DataError, match="UTF-8"):
        read_json_file(f)
    f.write_text('{"lr": NaN}')
    with pytest.raises(DataError, match="NaN"):
        read_json_file(f)


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of the tiny ELM (LoRA r=16) with optimizer moments, as the trainer writes it."""
    elm, _ = make_tiny_elm()
    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    opt = torch.optim.AdamW([p for p in elm.parameters() if p.requires_grad])
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    opt.step()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "step-000002", elm, cfg, opt, {"step": 2, "losses": [1.0, 0.9]})


@pytest.fixture
def ck(checkpoint, tmp_path):
    return shutil.copytree(checkpoint, tmp_path / "ck")


def test_the_checkpoint_loads(ck):
    elm, _ = make_tiny_elm()
    opt = torch.optim.AdamW([p for p in elm.parameters() if p.requires_grad])
    assert load_checkpoint(ck, elm, opt, max_steps=4)["step"] == 2


@pytest.mark.parametrize(
    "name", ["projector.safetensors", "encoder.safetensors", "optimizer.safetensors", "adapter/adapter_model.safetensors"]
)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_every_weight_file_of_a_checkpoint_is_checked(ck, name, damage):
    f = ck / name
    f.write_bytes(b"garbage " * 8 if damage == "garbage" else f.read_bytes()[: f.stat().st_size // 2])
    elm, _ = make_tiny_elm()
    opt = torch.optim.AdamW([p for p in elm.parameters() if p.requires_grad])
    with pytest.raises(DataError) as e:
        load_checkpoint(ck, elm, opt)
    assert str(f) in str(e.value)


def test_an_adapter_of_another_lora_rank_names_tensor_and_shapes(ck):
    elm, _ = make_tiny_elm(lora_r=4)
    with pytest.raises(
        DataError, match=r"adapter_model\.safetensors: tensor '.*lora_A\.weight' has shape \[16, 64\] .* expects \[4, 64\]"
    ):
        load_checkpoint(ck, elm)


def test_a_projector_of_another_shape_names_tensor_and_shapes(ck):
    elm, _ = make_tiny_elm(dim=16)
    with pytest.raises(
        DataError, match=r"projector\.safetensors: tensor '.*' has shape \[\d+, 32\] but the projector .* expects \[\d+, 16\]"
    ):
        load_checkpoint(ck, elm)


def test_nan_weights_in_a_checkpoint_are_refused_naming_the_tensor(ck):
    from safetensors.torch import load_file

    tensors = load_file(str(ck / "projector.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(ck / "projector.safetensors"))
    write_manifest(ck)  # a forged checkpoint whose manifest agrees: the weights themselves are checked
    elm, _ = make_tiny_elm()
    with pytest.raises(DataError, match=rf"projector\.safetensors: tensor '{name}' holds 1 NaN"):
        load_checkpoint(ck, elm)


@pytest.mark.parametrize("step", [10**7, -1, "ten", 2.5, True, None])
def test_a_trainer_state_with_an_impossible_step_is_refused(ck, step):
    (ck / "trainer_state.json").write_text(json.dumps({"step": step, "losses": []}))
    write_manifest(ck)
    with pytest.raises(DataError, match=r"trainer_state\.json: .*step"):
        read_trainer_state(ck, max_steps=100)
    elm, _ = make_tiny_elm()
    with pytest.raises(DataError, match=r"trainer_state\.json"):
        load_checkpoint(ck, elm, max_steps=100)


def test_a_trainer_state_within_max_steps_is_accepted(ck):
    (ck / "trainer_state.json").write_text(json.dumps({"step": 2, "losses": [1.0, 0.5]}))
    assert read_trainer_state(ck, max_steps=2)["step"] == 2
    with pytest.raises(DataError, match="max_steps 1"):
        read_trainer_state(ck, max_steps=1)
    (ck / "trainer_state.json").write_text("{not json")
    with pytest.raises(DataError, match=r"trainer_state\.json: .*line 1 column 2"):
        read_trainer_state(ck)


# ---------------------------------------------------------------- GGUF


def _tiny_gguf(path):
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.ones((16, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_well_formed_gguf_passes_the_check(tmp_path):
    assert check_gguf(_tiny_gguf(tmp_path / "ok.gguf")) == tmp_path / "ok.gguf"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "cut-header", "huge-counts", "empty"])
def test_a_corrupt_gguf_is_refused_naming_the_file(tmp_path, damage):
    raw = _tiny_gguf(tmp_path / "ok.gguf").read_bytes()
    f = tmp_path / "x.gguf"
    f.write_bytes({
        "garbage": b"not a gguf file " * 4,
        "truncated": raw[: len(raw) - 100],  # tensor data cut short
        "cut-header": raw[:40],
        "huge-counts": b"GGUF" + struct.pack("<IQQ", 3, 10**12, 10**12) + b"\0" * 64,
        "empty": b"",
    }[damage])  # fmt: skip
    with pytest.raises(DataError, match=r"x\.gguf: .*expected a GGUF model file"):
        load_llm(str(f))


# ---------------------------------------------------------------- the CLI: exit 2, "error: <file>", no traceback


def _cli(capsys, args):
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc != 2 or "\nerror: " in "\n" + err
    return rc, err


def test_cli_refuses_a_corrupt_gguf_before_any_work(tmp_path, capsys):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8)
    rc, err = _cli(capsys, ["quickstart", "--output_dir", str(tmp_path / "run"), "--model.llm", str(bad)])
    assert rc == 2 and "\nerror: " in "\n" + err and str(bad) in err
    assert not (tmp_path / "run" / "store").exists()  # refused before the data were built


def test_cli_evaluate_refuses_a_config_that_is_not_json(ck, tmp_path, capsys):
    (ck / "config.json").write_text('{"model": {"llm": "tiny"')
    write_manifest(ck)
    rc, err = _cli(capsys, ["evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval")])
    assert rc == 2 and str(ck / "config.json") in err and "line 1 column" in err


def test_cli_resume_refuses_a_huge_header_and_an_impossible_step(checkpoint, ck, tmp_path, capsys):
    (ck / "projector.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    args = ["run", "--config", str(ck / "config.json"), "--output_dir", str(tmp_path / "run"), "--train.resume_from", str(ck)]
    rc, err = _cli(capsys, args)
    assert rc == 2 and str(ck / "projector.safetensors") in err and "the checkpoint wrote" in err  # the manifest's size
    shutil.copy2(checkpoint / "projector.safetensors", ck / "projector.safetensors")
    (ck / "trainer_state.json").write_text(json.dumps({"step": 10**7}))
    write_manifest(ck)
    rc, err = _cli(capsys, args)
    assert rc == 2 and "claims step 10000000" in err and str(ck / "trainer_state.json") in err
    assert not (tmp_path / "run" / "store").exists()


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A real checkpoint of the tiny quickstart path (1 training step)."""
    from ecg_bench.pipeline import run
    from ecg_bench.presets import tiny

    cfg = tiny(str(tmp_path_factory.mktemp("run")))
    cfg.train.max_steps, cfg.eval.conditions = 1, [choice(ConditionOptions, "real")]
    run(cfg)
    return tmp_path_factory.getbasetemp() / cfg.output_dir / "checkpoints" / "final"


def test_cli_evaluate_refuses_a_checkpoint_with_nan_weights(trained_checkpoint, tmp_path, capsys):
    from safetensors.torch import load_file

    ck = shutil.copytree(trained_checkpoint, tmp_path / "ck")
    f = ck / "adapter" / "adapter_model.safetensors"
    tensors = load_file(str(f))
    name = sorted(tensors)[-1]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(f))
    write_manifest(ck)
    rc, err = _cli(
        capsys, ["evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval"), "--eval.conditions", "real"]
    )
    assert rc == 2 and "\nerror: " in "\n" + err and f"{f}: tensor '{name}' holds" in err and "NaN" in err
    assert not (tmp_path / "eval" / "results.json").exists()
