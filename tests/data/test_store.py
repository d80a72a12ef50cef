from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.preprocess import preprocess_record
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.sources.synthetic import generate_records
from ecg_bench.data.store import SegmentStore, build_store
from ecg_bench.signals.processing import resample, segment
from config_helpers import data_config


def listing(folder) -> list[str]:
    """Names in ``folder``, without the stores' lock files (``<store>.lock``, kept beside a store)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


FS, SEGMENT_LEN = 250, 500  # as the session store in conftest.py


@pytest.fixture(autouse=True)
def _propagate(monkeypatch):
    """caplog listens on the root logger; a CLI run elsewhere (setup_logging) may have cut the package logger off."""
    monkeypatch.setattr(logging.getLogger("ecg_bench"), "propagate", True)


def test_round_trip_values_and_index(store, records):
    assert len(store) == len(records) * 5  # 10 s at 250 Hz -> five 2 s segments
    assert isinstance(store._signals, np.memmap) and store._signals.dtype == np.float32
    assert store.fs == FS and store.segment_len == SEGMENT_LEN
    assert store.meta["num_records"] == len(records) and store.meta["leads"] == list(LEADS)
    assert store.meta["skipped"] == {} and store.meta["format_version"] == 1
    for rec in (records[0], records[17], records[-1]):
        expected = segment(resample(rec.signal, rec.fs, FS), SEGMENT_LEN)
        ids = store.by_record(rec.record_id)
        assert len(ids) == 5
        np.testing.assert_array_equal(store.signals(ids), expected)
        for k, i in enumerate(ids):
            np.testing.assert_array_equal(store.signal(i), expected[k])
            row = store.index[i]
            assert row["segment_id"] == i and row["segment_index"] == k
            assert row["record_id"] == rec.record_id and row["patient_id"] == rec.patient_id
            assert row["report"] == rec.report and row["labels"] == rec.labels and row["metadata"] == rec.metadata
    assert store.by_record("nope") == []
    with pytest.raises(IndexError):
        store.signal(len(store))


def test_reopen_and_pickle(store):
    again = SegmentStore(store.path)
    np.testing.assert_array_equal(again.signal(3), store.signal(3))
    clone = pickle.loads(pickle.dumps(store))  # DataLoader workers: reopens the memmap
    assert isinstance(clone._signals, np.memmap)
    np.testing.assert_array_equal(clone.signals([0, 5]), store.signals([0, 5]))
    assert len(pickle.dumps(store)) < 100_000 + len(json.dumps(store.index))


def test_bad_records_are_skipped_and_counted(tmp_path, caplog):
    good = list(generate_records(3, 1, seed=1))
    nan_lead = good[0].signal.copy()
    nan_lead[4] = np.nan
    flat = good[0].signal.copy()
    flat[7] = 0.0
    gap = good[0].signal.copy()
    gap[2, 100:1500] = np.nan
    small_gap = good[0].signal.copy()
    small_gap[2, 100:120] = np.nan
    bad = [
        ECGRecord("bad-nan", "px", nan_lead, 500.0),
        ECGRecord("bad-11", "px", good[0].signal[:11], 500.0, leads=LEADS[:11]),
        ECGRecord("bad-flat", "px", flat, 500.0),
        ECGRecord("bad-gap", "px", gap, 500.0),
        ECGRecord("bad-short", "px", good[0].signal[:, :600], 500.0),
        ECGRecord("ok-small-gap", "py", small_gap, 500.0),
    ]
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        st = build_store([good[0], *bad, *good[1:]], tmp_path / "s", "mixed", FS, SEGMENT_LEN)
    assert st.meta["skipped"] == {
        "all-NaN lead": 1,
        "missing lead": 1,
        "flat lead": 1,
        "long NaN gap": 1,
        "too short": 1,
    }
    reasons = {r["record_id"]: r for r in st.meta["skipped_records"]}
    assert reasons["bad-nan"]["detail"] == "all-NaN lead: aVL"
    assert "V6" in reasons["bad-11"]["detail"] and reasons["bad-flat"]["detail"] == "flat lead: V2"
    assert st.meta["num_records"] == 4 and len(st) == 4 * 5
    assert {r["record_id"] for r in st.index} == {g.record_id for g in good} | {"ok-small-gap"}
    assert np.isfinite(st.signals(range(len(st)))).all()
    assert "skipping record bad-11 (missing lead)" in caplog.text and "missing lead: 1" in caplog.text


def test_atomic_build_replaces_existing_store(tmp_path):
    out = tmp_path / "store"
    first = build_store(generate_records(2, 1, seed=0), out, "synthetic", FS, SEGMENT_LEN)
    assert len(first) == 10
    (out / "stale.txt").write_text("from the old store")
    recs = list(generate_records(3, 1, seed=0))
    four_segments_mb = 4 * 12 * SEGMENT_LEN * 4 / 2**20  # several chunks: exercises the chunk copy
    second = build_store(recs, out, "synthetic", FS, SEGMENT_LEN, chunk_mb=four_segments_mb)
    assert len(second) == 15 and not (out / "stale.txt").exists()
    for rec in recs:
        expected = segment(resample(rec.signal, rec.fs, FS), SEGMENT_LEN)
        np.testing.assert_array_equal(second.signals(second.by_record(rec.record_id)), expected)
    assert listing(tmp_path) == ["store"]  # no tmp / old folders left (the lock file stays beside the store)
    assert listing(out) == [".ecg-bench.json", "index.jsonl", "meta.json", "signals.npy"]  # chunks gone


def test_failed_build_leaves_nothing_behind(tmp_path):
    out = tmp_path / "store"
    build_store(generate_records(1, 1, seed=0), out, "synthetic", FS, SEGMENT_LEN)

    def exploding():
        yield from generate_records(2, 1, seed=0)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        build_store(exploding(), out, "synthetic", FS, SEGMENT_LEN)
    assert listing(tmp_path) == ["store"]
    assert len(SegmentStore(out)) == 5  # the old store is untouched


def test_no_usable_record_is_an_error(tmp_path):
    rec = next(generate_records(1, 1, seed=0))
    bad = ECGRecord("r", "p", rec.signal[:, :100], 500.0)
    with pytest.raises(Exception, match="no record"):
        build_store([bad], tmp_path / "s", "x", FS, SEGMENT_LEN)
    assert listing(tmp_path) == []


def test_missing_store_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SegmentStore(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "signals.npy").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="index.jsonl"):
        SegmentStore(tmp_path / "half")
    assert not SegmentStore.exists(tmp_path / "half") and not SegmentStore.exists(tmp_path / "nowhere")


def test_exists(store):
    assert SegmentStore.exists(store.path)


def test_preprocess_resamples_other_rates():
    rec = next(generate_records(1, 1, seed=0))
    rec360 = ECGRecord("r", "p", resample(rec.signal, 500, 360), 360.0)
    segs, reason = preprocess_record(rec360, FS, SEGMENT_LEN)
    assert reason is None and segs.shape == (5, 12, SEGMENT_LEN) and segs.dtype == np.float32


# ------------------------------------------------------------------ one writer per store; rebuilt when the source changed


def _ptbxl_run(tmp_path, shared_data):
    import shutil

    from ecg_bench.config import RunConfig
    from ecg_bench.data.sources.ptbxl import PTBXL, PTBXLOptions

    data_dir = tmp_path / "ptbxl"
    shutil.copytree(shared_data / "ptbxl", data_dir)
    cfg = RunConfig(output_dir=str(tmp_path / "run"))
    cfg.data.source, cfg.data.data_dir, cfg.data.workers = PTBXLOptions(), str(data_dir), 1
    return cfg, PTBXL(cfg.data), data_dir


def test_store_is_rebuilt_when_its_source_files_changed(tmp_path, shared_data, caplog):
    import os

    from ecg_bench.data.store import open_store

    cfg, src, data_dir = _ptbxl_run(tmp_path, shared_data)
    sdir = tmp_path / "run" / "store"
    first = open_store(cfg, src, sdir)
    fp = first.meta["source_fingerprint"]
    assert fp["files"] == sum(1 for p in data_dir.rglob("*") if p.is_file()) and len(fp["sha256"]) == 64
    built = (sdir / "signals.npy").stat().st_mtime_ns
    assert open_store(cfg, src, sdir) and (sdir / "signals.npy").stat().st_mtime_ns == built  # unchanged: reused
    hea = next(data_dir.rglob("*.hea"))
    st = hea.stat()
    os.utime(hea, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a record repaired in place
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        open_store(cfg, src, sdir)
    assert "source files of segment store" in caplog.text and "changed since it was built (newest_mtime_ns" in caplog.text
    rebuilt = (sdir / "signals.npy").stat().st_mtime_ns
    assert rebuilt != built
    (data_dir / "records500" / "extra.txt").write_text("a file added")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        open_store(cfg, src, sdir)
    assert f"files {fp['files']} -> {fp['files'] + 1}" in caplog.text
    again = (sdir / "signals.npy").stat().st_mtime_ns
    assert open_store(cfg, src, sdir) and (sdir / "signals.npy").stat().st_mtime_ns == again
    cfg.data.rebuild = True  # forced
    open_store(cfg, src, sdir)
    assert (sdir / "signals.npy").stat().st_mtime_ns != again


_HOLDER = """
import sys, time
from ecg_bench.config import RunConfig
from ecg_bench.data.sources.synthetic import Synthetic
from ecg_bench.data.store import open_store

class Slow(Synthetic):
    def read(self, key):
        time.sleep(0.15)
        return super().read(key)

cfg = RunConfig()
cfg.data.source.num_patients, cfg.data.source.records_per_patient, cfg.data.seed, cfg.data.workers = 12, 1, 5, 1
open_store(cfg, Slow(cfg.data), sys.argv[1])
"""


def _start_holder(tmp_path, sdir):
    import subprocess
    import sys
    import time

    from ecg_bench.data.store import lock_path

    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(sdir)])
    owner = lock_path(sdir).with_name(lock_path(sdir).name + ".owner")
    deadline = time.time() + 60
    while not owner.exists():
        assert proc.poll() is None and time.time() < deadline, "the first build did not take the lock"
        time.sleep(0.02)
    return proc


def test_a_second_writer_waits_for_the_first_then_reuses_its_store(tmp_path, caplog):
    from ecg_bench.config import RunConfig
    from ecg_bench.data.sources.synthetic import Synthetic
    from ecg_bench.data.store import open_store

    class Counting(Synthetic):
        reads = 0

        def read(self, key):
            Counting.reads += 1
            return super().read(key)

    sdir = tmp_path / "store"
    proc = _start_holder(tmp_path, sdir)
    cfg = RunConfig()
    cfg.data.source.num_patients, cfg.data.source.records_per_patient, cfg.data.seed, cfg.data.workers = 12, 1, 5, 1
    try:
        with caplog.at_level(logging.INFO, logger="ecg_bench"):
            store = open_store(cfg, Counting(cfg.data), sdir)
    finally:
        assert proc.wait(60) == 0
    assert f"waiting for the lock on {sdir} held by pid {proc.pid}" in caplog.text
    assert Counting.reads == 0 and "reusing segment store" in caplog.text  # built once, by the first writer
    assert store.meta["num_records"] == 12 and store.meta["source_settings"]["seed"] == 5


def test_a_second_writer_stops_with_a_message_after_its_timeout(tmp_path):
    from ecg_bench.data.sources.synthetic import Synthetic
    from ecg_bench.errors import DataError

    sdir = tmp_path / "store"
    proc = _start_holder(tmp_path, sdir)
    try:
        with pytest.raises(DataError, match=rf"another process \(pid {proc.pid} on .*\) is building the store"):
            build_store(Synthetic(data_config(num_patients=2, records_per_patient=1)), sdir, "synthetic", FS, SEGMENT_LEN,
                        workers=1, lock_timeout=0.5)  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
