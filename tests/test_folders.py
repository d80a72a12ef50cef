"""The tool deletes or replaces only folders it made (a marker file), and refuses anything else by name."""

from __future__ import annotations

import json
import logging

import pytest
from elm_fixtures import make_tiny_elm

from ecg_bench import cli, folders
from ecg_bench.config import DataConfig, RunConfig
from ecg_bench.data.shards import remove_stale_temporaries, work_dir_for
from ecg_bench.data.sources.synthetic import Synthetic, generate_records
from ecg_bench.data.store import SegmentStore, build_store
from ecg_bench.folders import MARKER, FolderError
from ecg_bench.training.checkpoint import save_checkpoint
from config_helpers import data_config

CFG = data_config(num_patients=4, records_per_patient=1, seed=1)


@pytest.fixture(autouse=True)
def _quiet_cli(monkeypatch):
    package_log = logging.getLogger("ecg_bench")  # the CLI's setup_logging stops propagation: undo it afterwards
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(package_log, attr, list(package_log.handlers) if attr == "handlers" else getattr(package_log, attr))


def _foreign(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.txt").write_text("years of work")
    return folder / "thesis.txt"


def test_claim_replace_remove(tmp_path):
    new = folders.claim(tmp_path / "a" / "run", "run")
    assert json.loads((new / MARKER).read_text())["kind"] == "run"
    assert folders.claim(new, "run") == new  # ours, same kind: accepted
    with pytest.raises(FolderError, match="made by ecg-bench as a run folder, not a segment store"):
        folders.claim(new, "store")
    (tmp_path / "empty").mkdir()
    assert folders.is_ours(folders.claim(tmp_path / "empty", "store"), "store")
    precious = _foreign(tmp_path / "mine")
    with pytest.raises(FolderError, match=r"mine is not empty and was not made by ecg-bench"):
        folders.claim(tmp_path / "mine", "run")
    with pytest.raises(FolderError, match="refusing to delete it"):
        folders.remove(tmp_path / "mine")
    tmp = folders.make_temp(tmp_path / "mine", "store")
    with pytest.raises(FolderError, match="not made by ecg-bench"):
        folders.replace(tmp, tmp_path / "mine", "store")
    assert precious.read_text() == "years of work"
    folders.remove(tmp)
    folders.remove(new)
    assert not tmp.exists() and not new.exists()


def test_store_onto_a_folder_the_tool_did_not_make_is_refused(tmp_path, capsys):
    precious = _foreign(tmp_path / "x")
    args = ["data", "--output_dir", str(tmp_path / "run"), "--data.store_dir", str(tmp_path / "x"),
            "--data.source.num_patients", "5", "--data.source.records_per_patient", "1", "--data.workers", "1"]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'x'} is not empty and was not made by ecg-bench" in err and "Traceback" not in err
    assert precious.read_text() == "years of work" and sorted(p.name for p in (tmp_path / "x").iterdir()) == ["thesis.txt"]
    with pytest.raises(FolderError, match="not made by ecg-bench"):  # the library refuses it too, before any work
        build_store(list(generate_records(1, 1, seed=0)), tmp_path / "x", "synthetic", 250, 500)
    assert precious.exists()


def test_store_is_never_the_data_dir_or_inside_it(tmp_path):
    data_dir = tmp_path / "ptb-xl"
    precious = _foreign(data_dir)
    for store in (data_dir, data_dir / "store", tmp_path):
        src = Synthetic(data_config(num_patients=4, records_per_patient=1, data_dir=str(data_dir)))
        with pytest.raises(FolderError, match="data.data_dir"):
            build_store(src, store, "synthetic", 250, 500, workers=1)
    assert precious.read_text() == "years of work" and sorted(p.name for p in data_dir.iterdir()) == ["thesis.txt"]


def test_a_store_the_tool_made_is_replaced(tmp_path):
    out = tmp_path / "store"
    build_store(Synthetic(CFG), out, "synthetic", 250, 500, workers=1)
    assert folders.is_ours(out, "store")
    again = build_store(Synthetic(data_config(num_patients=5, records_per_patient=1)), out, "synthetic", 250, 500, workers=1)
    assert again.meta["num_records"] == 5 and folders.is_ours(out, "store")


def test_work_folder_and_temporaries_without_the_marker_are_left_alone(tmp_path, caplog):
    out = tmp_path / "store"
    precious = _foreign(work_dir_for(out))  # a folder of the user's that happens to be named store.partial
    with pytest.raises(FolderError, match=r"store.partial is not empty and was not made by ecg-bench"):
        build_store(Synthetic(CFG), out, "synthetic", 250, 500, workers=1)
    assert precious.exists() and not out.exists()
    # a killed run's temporaries (pid 999999999 does not exist) are removed only when they carry the marker
    theirs = _foreign(tmp_path / "store.tmp-999999999")
    ours = folders.make_temp(tmp_path / "other", "store").rename(tmp_path / "store.old-999999999")
    with caplog.at_level(logging.WARNING, logger="ecg_bench"):
        remove_stale_temporaries(tmp_path, "store.*-*")
    assert theirs.exists() and not ours.exists()
    assert "leaving" in caplog.text and "store.tmp-999999999" in caplog.text


def test_hf_export_onto_a_folder_the_tool_did_not_make_is_refused(tmp_path, tiny_store, tiny_items):
    pytest.importorskip("datasets")
    from ecg_bench.data.hf import export_hf

    folds = [i % 2 for i in range(len(tiny_items))]
    precious = _foreign(tmp_path / "export")
    with pytest.raises(FolderError, match="not made by ecg-bench"):
        export_hf(tiny_items, folds, tmp_path / "export", store=tiny_store)
    assert precious.read_text() == "years of work" and sorted(p.name for p in (tmp_path / "export").iterdir()) == ["thesis.txt"]
    out = export_hf(tiny_items, folds, tmp_path / "new", store=tiny_store)
    assert folders.is_ours(out, "hf_export")
    export_hf(tiny_items, folds, out, store=tiny_store)  # its own export is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "new"]


def test_checkpoint_replaces_only_a_checkpoint(tmp_path):
    elm, _ = make_tiny_elm()
    cfg = RunConfig()
    cfg.model.llm = "tiny"
    precious = _foreign(tmp_path / "final")
    with pytest.raises(FolderError, match="not made by ecg-bench"):
        save_checkpoint(tmp_path / "final", elm, cfg)
    assert precious.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    ck = save_checkpoint(tmp_path / "ck", elm, cfg)
    assert folders.is_ours(ck, "checkpoint")
    save_checkpoint(tmp_path / "ck", elm, cfg)  # its own checkpoint is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "final"]


def test_a_default_store_with_other_settings_is_not_replaced_silently(tmp_path, capsys):
    """README: `ecg-bench data --data.source ptbxl ...` after the quickstart replaced its store without a word."""
    run = tmp_path / "run"
    base = ["data", "--output_dir", str(run), "--data.source.records_per_patient", "1", "--data.workers", "1"]
    assert cli.main([*base, "--data.source.num_patients", "6"]) == 0
    signals = (run / "store" / "signals.npy").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--data.source.num_patients", "8"]) == 2
    err = capsys.readouterr().err
    assert "holds a segment store built with other settings (num_patients: 6 -> 8" in err and "--data.rebuild" in err
    assert (run / "store" / "signals.npy").read_bytes() == signals
    assert cli.main([*base, "--data.source.num_patients", "8", "--data.rebuild", "true"]) == 0
    assert SegmentStore(run / "store").meta["num_records"] == 8
