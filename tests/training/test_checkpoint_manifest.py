"""A checkpoint is whole or refused: every file its manifest lists, missing or cut short, is refused by name by
``from_pretrained``, ``chat``, ``evaluate`` and hub staging (exit 2 on the CLI, ``CheckpointError`` in the API);
hub staging copies no link; the checkpoint format version is checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ecg_bench import cli
from ecg_bench.config import ConditionOptions, choice
from ecg_bench.errors import CheckpointError
from ecg_bench.inference import from_pretrained, stage_for_hub
from ecg_bench.training.manifest import MANIFEST, verify_checkpoint

PTBXL = "ptbxl/records500/06000/06000_hr"

pytestmark = pytest.mark.slow  # one tiny LoRA run (1 step) for the module; each case works on a copy, in seconds

LISTED = [
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "config.json",
    "elm.json",
    "encoder.safetensors",
    "optimizer.safetensors",
    "preprocessing.json",
    "projector.safetensors",
    "rng_state.json",
    "rng_state.safetensors",
    "trainer_state.json",
    "training_data.json",
]
"""What the tiny LoRA run's final checkpoint lists (checked against its manifest below)."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The final checkpoint of a real tiny LoRA run (1 training step)."""
    from ecg_bench.pipeline import run
    from ecg_bench.presets import tiny

    cfg = tiny(str(tmp_path_factory.mktemp("run") / "run"))
    cfg.train.max_steps, cfg.eval.conditions = 1, [choice(ConditionOptions, "real")]
    run(cfg)
    return Path(cfg.output_dir) / "checkpoints" / "final"


@pytest.fixture
def ck(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "ck")


def _cli(capsys, *args):
    rc = cli.main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_the_manifest_lists_every_file_with_size_hash_and_tensors(trained):
    doc = json.loads((trained / MANIFEST).read_text())
    assert doc["format_version"] == 1 and sorted(doc["files"]) == LISTED
    enc = doc["files"]["encoder.safetensors"]
    assert enc["size"] == (trained / "encoder.safetensors").stat().st_size and len(enc["sha256"]) == 64
    assert all(len(t["shape"]) >= 1 and t["dtype"] for t in enc["tensors"].values())
    assert verify_checkpoint(trained) == trained


@pytest.mark.parametrize("damage", ["missing", "truncated"])
@pytest.mark.parametrize("name", [*LISTED, MANIFEST])
def test_a_missing_or_truncated_file_is_refused_everywhere(ck, name, damage, tmp_path, shared_data, capsys):
    f = ck / name
    if damage == "missing":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError) as e:
        from_pretrained(ck, device="cpu")
    assert name in str(e.value)
    with pytest.raises(CheckpointError) as e:
        stage_for_hub(ck, tmp_path / "staged", "me/model")
    assert name in str(e.value) and not (tmp_path / "staged").exists()
    rc, err = _cli(capsys, "chat", "--checkpoint", str(ck), "--ecg", str(shared_data / PTBXL), "--question", "Rate?")
    assert rc == 2 and name in err
    rc, err = _cli(capsys, "evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval"))
    assert rc == 2 and name in err and not (tmp_path / "eval" / "results.json").exists()


def test_a_deleted_adapter_folder_is_refused_by_name(ck):
    shutil.rmtree(ck / "adapter")
    with pytest.raises(CheckpointError, match=r"adapter/adapter_\w+\.\w+ is missing"):
        from_pretrained(ck, device="cpu")


def test_a_changed_byte_is_refused_by_its_hash(ck):
    f = ck / "projector.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"projector\.safetensors: its content differs .*sha256"):
        from_pretrained(ck, device="cpu")


@pytest.mark.parametrize("version", [None, 2, "1"])
def test_an_unknown_format_version_is_refused_naming_found_and_expected(ck, version):
    doc = json.loads((ck / MANIFEST).read_text())
    doc.pop("format_version") if version is None else doc.update(format_version=version)
    (ck / MANIFEST).write_text(json.dumps(doc))
    found = "no format_version" if version is None else f"format_version {version!r}"
    with pytest.raises(CheckpointError, match=rf"{MANIFEST}: a checkpoint manifest of {found}; this ecg-bench reads "
                                              r"format_version 1 only"):  # fmt: skip
        verify_checkpoint(ck)


def test_hub_staging_refuses_a_link_and_stages_only_listed_files(ck, tmp_path):
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    staged = stage_for_hub(ck, tmp_path / "ok", "me/model")
    assert (staged / "adapter" / "adapter_model.safetensors").is_file() and not (staged / "optimizer.safetensors").exists()
    assert not any(staged.glob("rng_state*")) and verify_checkpoint(staged) == staged  # its own manifest
    (ck / "encoder.safetensors").unlink()
    (ck / "encoder.safetensors").symlink_to(target)
    with pytest.raises(CheckpointError, match=r"encoder\.safetensors is a symbolic link"):
        stage_for_hub(ck, tmp_path / "staged", "me/model")
    assert not (tmp_path / "staged").exists()


def test_a_contract_that_disagrees_across_files_is_refused(ck):
    from ecg_bench.training.manifest import write_manifest

    contract = json.loads((ck / "preprocessing.json").read_text())
    contract["fs"] = 500.0
    (ck / "preprocessing.json").write_text(json.dumps(contract))
    write_manifest(ck)  # a manifest that agrees: the contract itself is checked
    with pytest.raises(CheckpointError, match=r"elm\.json says input fs 250\.0, preprocessing\.json says 500\.0"):
        verify_checkpoint(ck)


@pytest.mark.parametrize("command", ["chat", "evaluate"])
def test_the_real_cli_exits_2_naming_a_missing_encoder(ck, command, tmp_path, shared_data):
    (ck / "encoder.safetensors").unlink()
    args = {"chat": ["--ecg", str(shared_data / PTBXL), "--question", "Rate?"],
            "evaluate": ["--output_dir", str(tmp_path / "eval")]}[command]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    p = subprocess.run([sys.executable, "-m", "ecg_bench", command, "--checkpoint", str(ck), *args], env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "encoder.safetensors is missing" in p.stderr and str(ck) in p.stderr


# ---------------------------------------------------------------- sizes in a received checkpoint's config


@pytest.mark.parametrize("key, value", [("model.lora_r", 10**7), ("model.projector.hidden", 10**8),
                                        ("model.encoder.num_tokens", 10**7), ("model.encoder.dim", 10**6),
                                        ("eval.max_new_tokens", 10**9)])  # fmt: skip
def test_huge_sizes_in_a_checkpoint_config_are_refused_before_building(ck, key, value, tmp_path, shared_data, capsys):
    from ecg_bench.errors import DataError
    from ecg_bench.training.manifest import write_manifest

    cfg = json.loads((ck / "config.json").read_text())
    *path, last = key.split(".")
    node = cfg
    for k in path:
        node = node[k]
    node[last] = value
    (ck / "config.json").write_text(json.dumps(cfg))
    write_manifest(ck)  # a checkpoint whose files agree with its manifest, made with these sizes
    with pytest.raises(DataError, match=rf"config\.json: {key} = {value} is above the limit [\d,]+ .*"
                                        r"--model_size_limit_factor N only for a config you trust"):  # fmt: skip
        from_pretrained(ck, device="cpu")
    rc, err = _cli(capsys, "chat", "--checkpoint", str(ck), "--ecg", str(shared_data / PTBXL), "--question", "Rate?")
    assert rc == 2 and f"{key} = {value} is above the limit" in err
    rc, err = _cli(capsys, "evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval"))
    assert rc == 2 and f"{key} = {value} is above the limit" in err


def test_the_size_factor_raises_the_bounds(monkeypatch):
    from ecg_bench import limits
    from ecg_bench.errors import DataError

    cfg = {"model": {"lora_r": 5000, "encoder": {"dim": 64}}, "eval": {"max_new_tokens": 16}}
    with pytest.raises(DataError, match=r"model\.lora_r = 5000 is above the limit 4,096"):
        limits.check_model_sizes(cfg, "config.json")
    monkeypatch.setattr(limits, "_model_size_factor", 1.0)  # restored after the test
    limits.set_model_size_factor(2)
    limits.check_model_sizes(cfg, "config.json")
    with pytest.raises(DataError, match="must be a number >= 1"):
        limits.set_model_size_factor(0.5)
