"""Hostile inputs are refused from what they CLAIM, before any read or allocation (issue 18 findings 1, 2, 6, 8, 12,
13, 14): each case runs the real CLI in a child process with a capped address space, and checks the exit code (2),
a message naming the file or value, and the child's peak memory (``ru_maxrss``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ecg_bench.errors import DataError
from ecg_bench.limits import LIMITS, limits_table, load_config_file, parse_yaml

_RUNNER = """
import resource, subprocess, sys
cap = int(sys.argv[1])
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
p = subprocess.run(sys.argv[2:], preexec_fn=limit)
sys.stderr.write("\\nPEAK_KB=%d\\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(p.returncode)
"""
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(args, cwd, stdin: bytes | None = None, cap_gb: float = 8.0, env: dict | None = None):
    """``(exit code, stdout, stderr, peak RSS in MB)`` of ``python -m ecg_bench ARGS`` under a ``cap_gb`` address-space
    cap (so a regression fails with MemoryError instead of exhausting the machine)."""
    e = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **(env or {})}
    args = [a if isinstance(a, bytes) else os.fsencode(str(a)) for a in args]
    cmd = [sys.executable, "-c", _RUNNER, str(int(cap_gb * 1024**3)), sys.executable, "-m", "ecg_bench", *args]
    p = subprocess.run(cmd, cwd=cwd, env=e, input=stdin if stdin is not None else b"", capture_output=True, timeout=600)
    err = p.stderr.decode("utf-8", "replace")
    head, _, peak = err.rpartition("PEAK_KB=")
    return p.returncode, p.stdout.decode("utf-8", "replace"), head, int(peak.strip()) / 1024


def _contract_checkpoint(folder: Path) -> Path:
    """A complete checkpoint folder without trained weights (config, contract, elm.json, manifest): chat verifies
    it, then reads and checks the ECG before it loads any model."""
    from elm_fixtures import write_config_only_checkpoint

    from ecg_bench.config import RunConfig

    return write_config_only_checkpoint(folder, RunConfig().to_dict())


# ---------------------------------------------------------------- finding 1: HDF5 claiming 400M samples per lead


def test_hdf5_claiming_400m_samples_per_lead_is_refused_from_its_metadata(tmp_path):
    import h5py

    bomb = tmp_path / "exams_part0.hdf5"
    with h5py.File(bomb, "w") as f:  # 2 kB on disk: the chunks are never written
        f.create_dataset("exam_id", data=np.array([7, 0], dtype=np.int64))
        f.create_dataset("tracings", shape=(2, 400_000_000, 12), dtype="f4", chunks=(1, 4096, 12), compression="gzip")
    assert bomb.stat().st_size < 4096
    ck = _contract_checkpoint(tmp_path / "ck")
    rc, out, err, peak = run_cli(["chat", "--checkpoint", ck, "--ecg", bomb, "--question", "rate?"], tmp_path)
    assert rc == 2, err
    assert "exams_part0.hdf5: dataset 'tracings'" in err and "4,800,000,000 values" in err
    assert "ECG_BENCH_MAX_RECORD_VALUES" in err
    assert "Traceback" not in err and out == ""
    assert peak < 600, f"peak RSS {peak:.0f} MB"


def test_hdf5_rows_and_chunks_are_bounded(tmp_path, monkeypatch):
    import h5py

    from ecg_bench.data.ecg_file import read_ecg_file

    many = tmp_path / "many.hdf5"
    with h5py.File(many, "w") as f:
        f.create_dataset("exam_id", shape=(2**25,), dtype="i8", chunks=(4096,))
        f.create_dataset("tracings", shape=(2**25, 4096, 12), dtype="f4", chunks=(1, 4096, 12))
    with pytest.raises(DataError, match=r"many.hdf5: dataset 'exam_id' claims 33,554,432 rows; at most 16,777,216"):
        read_ecg_file(many)
    chunky = tmp_path / "chunky.hdf5"
    with h5py.File(chunky, "w") as f:
        f.create_dataset("exam_id", data=np.array([7, 0], dtype=np.int64))
        f.create_dataset("tracings", shape=(2, 4096, 12), maxshape=(None, 4096, 12), dtype="f4", chunks=(2048, 4096, 12))
    with pytest.raises(DataError, match=r"chunky.hdf5: dataset 'tracings' is stored in chunks of 402,653,184 bytes"):
        read_ecg_file(chunky)
    monkeypatch.setenv("ECG_BENCH_MAX_HDF5_CHUNK_BYTES", str(2**30))  # raised by the user: the file is read
    with pytest.raises(DataError, match="all zeros"):
        read_ecg_file(chunky)


# ---------------------------------------------------------------- finding 2: YAML alias bombs


def _alias_bomb() -> str:
    """A YAML flow list of nine levels of anchors, each level nine aliases of the one before: 9^9 (387M) values when
    expanded, ~400 bytes as text."""
    levels = ["&a0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "[" + ", ".join(levels) + "]"


@pytest.mark.parametrize("command", ["sweep", "config"])
def test_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path, command):
    bomb = tmp_path / "bomb.yaml"
    where = "output_dir: out\naxes:\n  train.lr: " if command == "sweep" else "train:\n  lr: "  # a known key: checked
    bomb.write_text(where + _alias_bomb() + "\n")
    assert bomb.stat().st_size < 500
    args = ["sweep", bomb, "--dry_run"] if command == "sweep" else ["config", "--config", bomb]
    rc, out, err, peak = run_cli(args, tmp_path, cap_gb=4)
    assert rc == 2, err
    assert "bomb.yaml: expands to more than 1,000,000 values" in err and "ECG_BENCH_MAX_CONFIG_NODES" in err
    assert "Traceback" not in err and peak < 600, f"peak RSS {peak:.0f} MB"


def test_one_loader_bounds_every_yaml_and_json_document(tmp_path, monkeypatch):
    merge = "m0: &m0 {a: 1, b: 2}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}], k{i}: 1}}\n" for i in range(1, 9))  # fmt: skip
    with pytest.raises(DataError, match="merge.yaml: expands to more than"):
        parse_yaml(merge, "merge.yaml")  # merge keys copy the merged pairs: counted like aliases
    with pytest.raises(DataError, match="self.yaml: a YAML alias refers to a node that contains it"):
        parse_yaml("a: &a [1, *a]\n", "self.yaml")
    with pytest.raises(DataError, match="deep.yaml: YAML document nested too deeply|deep.yaml: nested deeper than 64"):
        parse_yaml("[" * 5000 + "]" * 5000, "deep.yaml")
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 3_000_000 + "0]")
    with pytest.raises(DataError, match=r"big.json: 6,000,003 bytes, more than the 4,194,304 a grid may have; not read "
                                         r"\(raise it with ECG_BENCH_MAX_CONFIG_BYTES=N"):  # fmt: skip
        load_config_file(big, "grid")
    monkeypatch.setenv("ECG_BENCH_MAX_CONFIG_BYTES", "1e7")
    with pytest.raises(DataError, match="big.json: more than 1,000,000 values"):
        load_config_file(big, "grid")
    monkeypatch.setenv("ECG_BENCH_MAX_CONFIG_NODES", "5e6")
    assert len(load_config_file(big, "grid")) == 3_000_001
    monkeypatch.setenv("ECG_BENCH_MAX_CONFIG_NODES", "lots")
    from ecg_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="ECG_BENCH_MAX_CONFIG_NODES='lots': expected a positive number"):
        load_config_file(big, "grid")
    monkeypatch.delenv("ECG_BENCH_MAX_CONFIG_NODES")
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {train: {lr: 0.001}}\nother: *b\n")
    assert load_config_file(ok) == {"base": {"train": {"lr": 0.001}}, "other": {"train": {"lr": 0.001}}}


def test_every_limit_documents_its_reason_and_risk():
    table = limits_table()
    for name, lim in LIMITS.items():
        assert lim.bounds and lim.reason and lim.risk and f"`ECG_BENCH_{name}=N`" in table


# ---------------------------------------------------------------- finding 8: a deflated .pth that inflates to GBs


def _pth_bomb(path: Path, numel: int = 200_000_000) -> None:
    """A torch.save archive whose one float tensor has ``numel`` elements, its data deflated (zeros): ~0.8 MB on
    disk, 800 MB declared. torch.save's own archive for a 123,457-element tensor, with the element count patched."""
    import struct

    import torch

    buf = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(123_457)}, buf)
    src = zipfile.ZipFile(buf)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = data.replace(struct.pack("<i", 123_457), struct.pack("<i", numel))
            if "/data/" in info.filename:
                with z.open(info.filename, "w", force_zip64=True) as out:
                    chunk = bytes(1 << 22)
                    for _ in range(numel * 4 // len(chunk)):
                        out.write(chunk)
                continue
            z.writestr(info.filename, data)


def test_deflated_pth_declaring_gigabytes_is_refused_from_its_zip_directory(tmp_path):
    bomb = tmp_path / "merl.pth"
    _pth_bomb(bomb)
    assert bomb.stat().st_size < 2_000_000
    rc, out, err, peak = run_cli(["import-encoder", "--format", "merl", "--src", bomb, "--out", tmp_path / "enc"], tmp_path)
    assert rc == 2, err
    assert "merl.pth: its 7 members declare 796,917,990 bytes" in err and "ECG_BENCH_MAX_COMPRESSION_RATIO" in err
    assert "Traceback" not in err
    assert peak < 600, f"peak RSS {peak:.0f} MB"
    assert not (tmp_path / "enc").exists()


def test_pth_that_is_not_a_zip_is_refused(tmp_path):
    from ecg_bench.safe_files import check_torch_archive

    legacy = tmp_path / "old.pth"
    legacy.write_bytes(b"\x80\x02}q\x00." + bytes(100))  # a pre-1.6 pickle stream
    with pytest.raises(DataError, match="old.pth: not a zip archive; expected a weights file written by torch.save"):
        check_torch_archive(legacy)


# ---------------------------------------------------------------- finding 6: free text is text


@pytest.mark.parametrize("question", ["Rate: fast? # or slow", "'quoted' and \"double\"", "yes", "no", "null", "[1, 2]",
                                      "&anchor *alias !!python/object:os.system x", "{a: b}", "3.0", " spaced "])  # fmt: skip
def test_a_question_is_taken_verbatim_never_decoded_as_yaml(question):
    from ecg_bench.cli.tools import ChatCommand
    from ecg_bench.config import build
    from ecg_bench.flags import parse_flags

    _, overrides = parse_flags(ChatCommand, ["--checkpoint", "ck", "--ecg", "x.npy", "--question", question], "chat")
    assert build(ChatCommand(), None, overrides).question == question


def test_non_utf8_questions_are_refused_naming_the_byte(tmp_path):
    from ecg_bench.inference import read_questions

    ck = _contract_checkpoint(tmp_path / "ck")
    np.save(tmp_path / "x.npy", np.zeros((12, 5000), np.float32))
    rc, out, err, _ = run_cli([b"chat", b"--checkpoint", str(ck).encode(), b"--ecg", b"x.npy", b"--fs", b"500",
                               b"--question", b"rate \xff?"], tmp_path)  # fmt: skip
    assert rc == 2 and "--question: not valid UTF-8 text (byte 5: b'\\xff')" in err and "Traceback" not in err, err
    for errors in ("strict", "surrogateescape"):  # stdin as a UTF-8 locale and as the C locale (UTF-8 mode) decode it
        stdin = io.TextIOWrapper(io.BytesIO(b"first?\nsecond \xfe?\n"), encoding="utf-8", errors=errors)
        with pytest.raises(DataError, match=r"stdin: (question line 2 is )?not valid UTF-8 text"):
            list(read_questions(stdin))


# ---------------------------------------------------------------- finding 13: tracebacks instead of messages


def test_pickled_text_model_weights_are_refused_naming_the_file(tmp_path, capsys):
    import torch
    from elm_fixtures import make_tiny_bert
    from transformers import BertModel

    from ecg_bench import cli

    bert = make_tiny_bert(tmp_path / "bert", ["sinus rhythm", "atrial fibrillation"])
    model = BertModel.from_pretrained(bert)
    (bert / "model.safetensors").unlink()
    torch.save(model.state_dict(), bert / "pytorch_model.bin")  # a pickle: loading it would unpickle
    rc = cli.main(["pretrain", "merl", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "enc"),
                   "--text_model", str(bert)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "pytorch_model.bin: the text model" in err and "only safetensors weights are loaded" in err, err
    assert not (tmp_path / "enc").exists()


def test_npy_header_claiming_1e20_samples_is_refused_from_its_header(tmp_path):
    from numpy.lib import format as npformat

    bomb = tmp_path / "huge.npy"
    with bomb.open("wb") as f:
        npformat.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (12, 10**20)})
        f.write(bytes(64))
    ck = _contract_checkpoint(tmp_path / "ck")
    rc, _, err, _ = run_cli(["chat", "--checkpoint", ck, "--ecg", bomb, "--fs", "500", "--question", "q"], tmp_path)
    assert rc == 2 and "huge.npy: 1,200,000,000,000,000,000,000 values (samples x signals) claimed" in err, err
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((12, 1000), np.float32))
    short.write_bytes(short.read_bytes()[:-100])
    from ecg_bench.data.ecg_file import read_ecg_file

    with pytest.raises(DataError, match=r"short.npy: 48,028 bytes, but its header \(float32 \(12, 1000\)\) needs 48,128"):
        read_ecg_file(short, fs=500)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}] * 12, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objects.npy: expected a real numeric array, got dtype object"):
        read_ecg_file(objects, fs=500)


@pytest.mark.parametrize("rate", ["1000000", "nan", "0"])
def test_header_sampling_rate_out_of_bounds_is_refused(tmp_path, shared_data, rate):
    import shutil

    from ecg_bench.data.ecg_file import read_ecg_file

    for stem in ("ptbxl/records500/06000/06000_hr", "cpsc/cpsc_2018/g1/A1980"):
        src = shared_data / stem
        for f in src.parent.glob(src.name + ".*"):
            shutil.copy(f, tmp_path / f.name)
        hea = tmp_path / (src.name + ".hea")
        first, *rest = hea.read_text().splitlines()
        words = first.split()
        words[2] = rate
        hea.write_text("\n".join([" ".join(words), *rest]) + "\n")
        refused = rf"{src.name}.hea.*sampling rate|{src.name}.hea: leads, fs and samples must be positive"
        with pytest.raises(DataError, match=refused) as e:
            read_ecg_file(hea)
        assert "Traceback" not in str(e.value)
    ck = _contract_checkpoint(tmp_path / "ck")
    rc, _, err, _ = run_cli(["chat", "--checkpoint", ck, "--ecg", tmp_path / "06000_hr", "--question", "q"], tmp_path)
    assert rc == 2 and "06000_hr.hea" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- finding 12: contract edits


def test_contract_fields_are_checked():
    from ecg_bench.data.contract import PreprocessingContract

    with pytest.raises(DataError, match=r"max_nan_gap_s must be a number >= 0, got -1"):
        PreprocessingContract.from_dict({"fs": 250.0, "segment_len": 500, "max_nan_gap_s": -1})
    with pytest.raises(DataError, match=r"flat_lead_std_mv must be a number >= 0, got nan"):
        PreprocessingContract(fs=250.0, segment_len=500, flat_lead_std_mv=float("nan"))
    with pytest.raises(DataError, match=r"filters \['bandpass 0.5-40 Hz'\] are declared, but the preprocessing applies no"):
        PreprocessingContract.from_dict({"fs": 250.0, "segment_len": 500, "filters": ["bandpass 0.5-40 Hz"]})
    with pytest.raises(DataError, match=r"fs 1e\+06 Hz is above 20000 Hz"):
        PreprocessingContract(fs=1e6, segment_len=500)
    from ecg_bench.models.encoders.contract import PreprocessingContract as EncoderContract

    with pytest.raises(DataError, match=r"encoder.json: invalid encoder preprocessing contract: fs must be a positive rate"):
        EncoderContract.from_json({"fs": "nan", "segment_len": 500, "leads": ["I"], "scaling": "minmax"})


@pytest.mark.slow
def test_checkpoint_files_that_disagree_are_refused(tiny_checkpoint, tmp_path):
    import json
    import shutil

    from ecg_bench.data.contract import check_checkpoint_contract
    from ecg_bench.inference import from_pretrained
    from ecg_bench.training.manifest import write_manifest

    ck = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint[1], ck, ignore=shutil.ignore_patterns("eval-*"))
    assert check_checkpoint_contract(ck).fs == 250.0
    contract, manifest = json.loads((ck / "preprocessing.json").read_text()), json.loads((ck / "elm.json").read_text())
    contract.update(fs=500.0, segment_len=1000)
    manifest["input"].update(fs=500.0, seq_len=1000)
    (ck / "preprocessing.json").write_text(json.dumps(contract))
    (ck / "elm.json").write_text(json.dumps(manifest))
    write_manifest(ck)  # a manifest that agrees with the edited files: the contract itself is checked
    with pytest.raises(DataError, match=r"disagree: preprocessing.json says fs 500.0, config.json gives 250.0; "
                                        r"preprocessing.json says segment_len 1000, config.json gives 500"):  # fmt: skip
        from_pretrained(ck, device="cpu")
    shutil.copy(tiny_checkpoint[1] / "preprocessing.json", ck / "preprocessing.json")
    (ck / "elm.json").unlink()
    with pytest.raises(DataError, match=r"elm\.json is missing"):
        from_pretrained(ck, device="cpu")


# ---------------------------------------------------------------- finding 14: smaller ones


def test_a_1e38_mv_sample_is_refused_by_chat_and_skipped_by_a_store(tmp_path, shared_data, capsys):
    import shutil

    from ecg_bench import cli

    data = tmp_path / "cpsc"
    shutil.copytree(shared_data / "cpsc", data)
    hea = data / "cpsc_2018" / "g1" / "A1980.hea"
    hea.write_text(hea.read_text().replace(" 1000/mV ", " 1e-36/mV ", 1))  # lead I: digital / 1e-36 -> ~1e38 mV
    ck = _contract_checkpoint(tmp_path / "ck")
    rc, _, err, _ = run_cli(["chat", "--checkpoint", ck, "--ecg", hea, "--question", "q"], tmp_path)
    assert rc == 2 and "A1980.hea): sample 0 of lead 0 is" in err and "beyond the 500 mV a surface ECG reaches" in err, err
    cli.main(["data", "--data.source", "cpsc2018", "--data.data_dir", str(data), "--data.store_dir", str(tmp_path / "store"),
              "--output_dir", str(tmp_path / "out"), "--data.workers", "1"])  # the store; its default QA mapping needs synthetic
    meta = json.loads((tmp_path / "store" / "meta.json").read_text())
    assert meta["skipped"].get("implausible amplitude") == 1, meta["skipped"]


def test_refused_store_folders_get_no_lock_file(tmp_path, shared_data, capsys):
    import shutil

    from ecg_bench import cli

    data = tmp_path / "Downloads" / "cpsc"
    shutil.copytree(shared_data / "cpsc", data)
    before = sorted(data.parent.rglob("*"))
    rc = cli.main(["data", "--data.source", "cpsc2018", "--data.data_dir", str(data), "--data.store_dir", str(data / "store"),
                   "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert rc == 2 and "is inside data.data_dir" in capsys.readouterr().err
    theirs = tmp_path / "mine"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    rc = cli.main(["data", "--data.source", "cpsc2018", "--data.data_dir", str(data), "--data.store_dir", str(theirs),
                   "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert rc == 2 and "was not made by ecg-bench" in capsys.readouterr().err
    assert not [p for p in tmp_path.rglob("*.lock*") if p.parent != tmp_path / "out"]  # out: the run folder, ours
    assert sorted(data.parent.rglob("*")) == before
    assert (theirs / "notes.txt").read_text() == "mine"


def test_missing_datasets_package_is_reported_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    from ecg_bench import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    rc = cli.main(["data", "--data.source", "synthetic", "--data.store_dir", str(tmp_path / "store"),
                   "--data.export_hf", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert rc == 2 and "data.export_hf need the 'datasets' package, which is not installed" in capsys.readouterr().err
    assert not (tmp_path / "store").exists() and not (tmp_path / "hf").exists()


def test_markdown_tables_keep_config_values_as_text():
    from ecg_bench.evaluation.report.tables import Table

    t = Table("summary", "Summary", ["configuration", "p"], [["<img src=x onerror=alert(1)>", "<0.001"], ["a\nb", "0.2"]],
              note="<script>alert(1)</script> p < 0.05")  # fmt: skip
    md = t.markdown()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)>" in md and "<script" not in md
    assert "| <0.001 |" in md and "p < 0.05" in md and "| a b |" in md


def test_flag_values_go_through_the_bounded_yaml_loader(tmp_path, capsys):
    from ecg_bench import cli

    assert cli.main(["config", "--eval.conditions", _alias_bomb()]) == 2
    assert "--eval.conditions: expands to more than 1,000,000 values" in capsys.readouterr().err
    (tmp_path / "secret.yaml").write_text("x: 1\n")
    assert cli.main(["config", "--train.lr", f"!include {tmp_path / 'secret.yaml'}"]) == 2
    err = capsys.readouterr().err
    assert "--train.lr: not a readable YAML document, expected a flag value" in err and "Traceback" not in err
