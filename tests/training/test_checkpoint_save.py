"""Saving a checkpoint: a ``.tmp-<pid>`` folder is never a checkpoint (resume refuses it, naming the latest complete
one), the next save removes those of killed processes (ours only), and a full disk is a message with the unfinished
copy removed and the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest
from elm_fixtures import make_tiny_elm

from ecg_bench import cli, folders
from ecg_bench.config import EncoderOptions, RunConfig, choice
from ecg_bench.errors import CheckpointError
from ecg_bench.training import checkpoint as ckpt
from ecg_bench.training.manifest import MANIFEST, verify_checkpoint


def _cfg() -> RunConfig:
    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    return cfg


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    elm, _ = make_tiny_elm()
    ck = ckpt.save_checkpoint(tmp_path_factory.mktemp("ck") / "checkpoints" / "step-000001", elm, _cfg(), None,
                              {"step": 1, "losses": [1.0]})  # fmt: skip
    return elm, ck


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_tmp_folder_is_refused_naming_the_latest_complete_checkpoint(saved, tmp_path, capsys):
    _, done = saved
    parent = shutil.copytree(done.parent, tmp_path / "checkpoints")
    half = shutil.copytree(done, parent / f"step-000002.tmp-{_dead_pid()}")
    (half / MANIFEST).unlink()  # a save cut short: everything but the manifest
    with pytest.raises(CheckpointError, match=rf"{half.name} is a checkpoint save that did not finish .* latest complete "
                                              rf"checkpoint beside it is {parent / 'step-000001'}"):  # fmt: skip
        verify_checkpoint(half)
    args = ["run", "--config", str(done / "config.json"), "--output_dir", str(tmp_path / "run"), "--train.resume_from",
            str(half)]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{half} is a checkpoint save that did not finish" in err
    assert not (tmp_path / "run" / "store").exists()


def test_the_next_save_removes_stale_tmp_folders_of_ours_only(saved, tmp_path):
    elm, _ = saved
    parent = tmp_path / "checkpoints"
    dead, alive = _dead_pid(), os.getppid()
    stale = folders.make_temp(parent / "step-000001", "checkpoint").rename(parent / f"step-000001.tmp-{dead}")
    (stale / "projector.safetensors").write_bytes(b"half")
    live = folders.make_temp(parent / "step-000002", "checkpoint").rename(parent / f"step-000002.tmp-{alive}")
    foreign = parent / f"step-000003.tmp-{dead}"  # named like ours, but not made by ecg-bench
    foreign.mkdir()
    (foreign / "notes.txt").write_text("the user's")
    ck = ckpt.save_checkpoint(parent / "step-000004", elm, _cfg(), None, {"step": 4, "losses": [1.0] * 4})
    assert verify_checkpoint(ck) == ck
    assert not stale.exists() and live.is_dir() and (foreign / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize("failure", ["oserror", "safetensors"])
def test_a_full_disk_is_a_message_and_leaves_the_previous_checkpoint(saved, tmp_path, monkeypatch, failure):
    from safetensors import SafetensorError

    elm, done = saved
    ck = shutil.copytree(done, tmp_path / "checkpoints" / "final")
    before = {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()}

    def full(tensors, filename, *a, **k):
        if failure == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                              'left on device" })')  # fmt: skip

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(CheckpointError, match=r"could not save checkpoint .*final: no space left on device") as e:
        ckpt.save_checkpoint(ck, elm, _cfg(), None, {"step": 2, "losses": [1.0, 0.5]})
    if failure == "oserror":
        assert ".safetensors" in str(e.value)  # the file being written is named
    assert "unfinished copy was removed" in str(e.value)
    assert not list(ck.parent.glob("*.tmp-*"))
    assert {p.relative_to(ck): p.read_bytes() for p in ck.rglob("*") if p.is_file()} == before
