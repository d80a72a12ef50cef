"""The preprocessing engine: parallel shards, resume after an interruption or a kill, skip summary."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.shards import shard_paths, work_dir_for
from ecg_bench.data.record import ECGRecord
from ecg_bench.data.sources.base import data_error
from ecg_bench.data.sources.synthetic import Synthetic, generate_records
from ecg_bench.data.store import SegmentStore, build_store, skip_summary
from ecg_bench.errors import DataError
from config_helpers import data_config

FS, SEGMENT_LEN, SHARD = 250, 500, 5
CFG = data_config(num_patients=12, records_per_patient=2, seed=4)  # 24 records -> 5 shards of <= 5
FILES = ("signals.npy", "index.jsonl", "meta.json")


class Counting(Synthetic):
    """Synthetic records; counts reads and raises KeyboardInterrupt at read number ``interrupt_at``."""

    def __init__(self, cfg: DataConfig, interrupt_at: int | None = None):
        super().__init__(cfg)
        self.reads: list[str] = []
        self.interrupt_at = interrupt_at

    def read(self, key: str) -> ECGRecord:
        if self.interrupt_at is not None and len(self.reads) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.reads.append(key)
        return super().read(key)


class Faulty(Synthetic):
    """Synthetic records, some of them bad in the ways real readers report."""

    def read(self, key: str) -> ECGRecord:
        if key == "3":
            raise data_error("missing metadata", "record 3: no row in the metadata table")
        if key == "5":
            raise OSError("truncated .dat: 1200 of 120000 bytes")
        if key == "9":
            raise IndexError("list index out of range")  # what a parser raises on a damaged header
        rec = super().read(key)
        if key == "7":
            rec.signal[2] = np.nan
        return rec


def build(source, out: Path, **kw) -> SegmentStore:
    kw.setdefault("workers", 1)
    return build_store(source, out, "synthetic", FS, kw.pop("segment_len", SEGMENT_LEN), shard_size=SHARD, **kw)


def listing(folder: Path) -> list[str]:
    """Names in ``folder``, without the stores' lock files (``<store>.lock``, kept beside a store)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def same_files(a: Path, b: Path) -> None:
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(autouse=True)
def _propagate(monkeypatch):
    """caplog listens on the root logger; a CLI run elsewhere (setup_logging) may have cut the package logger off."""
    monkeypatch.setattr(logging.getLogger("ecg_bench"), "propagate", True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> SegmentStore:
    """An uninterrupted single-process build."""
    return build(Synthetic(CFG), tmp_path_factory.mktemp("ref") / "store")


def test_worker_count_does_not_change_the_store(reference, tmp_path):
    two = build(Synthetic(CFG), tmp_path / "two", workers=2)  # a spawn pool of 2 over 5 shards
    same_files(reference.path, two.path)
    assert len(two) == 24 * 5 and two.meta["skipped"] == {} and two.meta["num_records"] == 24
    assert [r["segment_id"] for r in two.index] == list(range(len(two)))
    assert [r["record_id"] for r in two.index[::5]] == [f"synth-r{i:05d}" for i in range(24)]  # key order
    # the same bytes as the in-process path over a plain list of the same records
    plain = build_store(list(generate_records(12, 2, seed=4)), tmp_path / "plain", "synthetic", FS, SEGMENT_LEN)
    np.testing.assert_array_equal(np.load(plain.path / "signals.npy"), np.load(two.path / "signals.npy"))
    assert (plain.path / "index.jsonl").read_bytes() == (two.path / "index.jsonl").read_bytes()
    assert listing(tmp_path) == ["plain", "two"]  # no .partial / .tmp left


def test_interrupted_build_resumes_without_redoing_finished_shards(reference, tmp_path):
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        build(Counting(CFG, interrupt_at=13), out)  # shards 0 and 1 (keys 0-9) finish, shard 2 does not
    work = work_dir_for(out)
    assert not out.exists() and not SegmentStore.exists(out)
    assert sorted(p.name for p in work.iterdir()) == sorted(
        [".ecg-bench.json", "settings.json", *(p.name for i in (0, 1) for p in shard_paths(work, i))]
    )
    again = Counting(CFG)
    store = build(again, out)
    assert again.reads == [str(i) for i in range(10, 24)]  # only the unfinished shards were read
    same_files(reference.path, store.path)
    assert not work.exists()


def test_killed_process_leaves_no_store_and_resumes(reference, tmp_path):
    out = tmp_path / "store"
    # A build in a child process, slowed down so that it can be killed with SIGKILL mid-run.
    code = f"""
import time
from ecg_bench.config import DataConfig
from ecg_bench.data.sources.synthetic import Synthetic, SyntheticOptions
from ecg_bench.data.store import build_store

class Slow(Synthetic):
    def read(self, key):
        time.sleep(0.1)
        return super().read(key)

build_store(Slow(DataConfig(source=SyntheticOptions(num_patients=12, records_per_patient=2), seed=4)), {str(out)!r}, "synthetic", {FS}, {SEGMENT_LEN},
            shard_size={SHARD}, workers=1)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    work = work_dir_for(out)
    deadline = time.time() + 60
    while not shard_paths(work, 1)[1].exists():
        assert proc.poll() is None and time.time() < deadline, "the build ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not SegmentStore.exists(out) and not out.exists()
    finished = [i for i in range(5) if shard_paths(work, i)[1].exists()]
    assert 2 <= len(finished) < 5 and finished == list(range(len(finished)))
    again = Counting(CFG)
    store = build(again, out)
    assert again.reads == [str(i) for i in range(SHARD * len(finished), 24)]
    same_files(reference.path, store.path)


def test_changed_settings_or_no_resume_start_over(tmp_path, caplog):
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        build(Counting(CFG, interrupt_at=13), out)
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        other = Counting(CFG)
        store = build(other, out, segment_len=250)
    assert "used other settings (segment_len); starting over" in caplog.text
    assert len(other.reads) == 24 and store.segment_len == 250 and len(store) == 24 * 10

    with pytest.raises(KeyboardInterrupt):
        build(Counting(CFG, interrupt_at=13), out)
    fresh = Counting(CFG)
    build(fresh, out, resume=False)
    assert len(fresh.reads) == 24


def test_damaged_shard_is_redone(reference, tmp_path):
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        build(Counting(CFG, interrupt_at=13), out)
    npy, jsonl = shard_paths(work_dir_for(out), 1)
    jsonl.write_text(jsonl.read_text().splitlines()[0] + "\n")  # rows of one record only
    again = Counting(CFG)
    same_files(reference.path, build(again, out).path)
    assert again.reads == [str(i) for i in range(5, 24)]


def test_skips_are_counted_with_reasons_and_summarised(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        store = build(Faulty(CFG), tmp_path / "store", workers=2)
    meta = store.meta
    assert meta["skipped"] == {"all-NaN lead": 1, "missing metadata": 1, "unreadable file": 2}
    assert meta["num_records"] == 20 and len(store) == 20 * 5
    by_key = {r["key"]: r for r in meta["skipped_records"]}
    assert by_key["3"] == {"record_id": "3", "key": "3", "reason": "missing metadata",
                           "detail": "record 3: no row in the metadata table"}  # fmt: skip
    assert by_key["5"]["detail"] == "OSError: truncated .dat: 1200 of 120000 bytes"
    assert by_key["9"]["reason"] == "unreadable file" and by_key["9"]["detail"].startswith("IndexError")
    assert by_key["7"]["record_id"] == "synth-r00007" and by_key["7"]["detail"] == "all-NaN lead: III"
    assert {r["record_id"] for r in store.index}.isdisjoint({"synth-r00003", "synth-r00005", "synth-r00007", "synth-r00009"})
    # unexpected exceptions are logged with their traceback (a reader bug must not hide among skips)
    assert "Traceback" in caplog.text and "OSError: truncated .dat" in caplog.text
    summary = skip_summary(meta)
    assert summary.splitlines()[0] == "skipped 4 of 24 records:"
    assert "  unreadable file: 2 (e.g. 5: OSError: truncated .dat: 1200 of 120000 bytes; 9: IndexError" in summary
    assert "  missing metadata: 1 (e.g. 3: record 3: no row in the metadata table)" in summary
    assert summary in caplog.text  # the closing summary is logged
    assert skip_summary(SegmentStore(store.path).meta) == summary and skip_summary({"skipped_records": []}) == "skipped: none"


def test_source_without_records_or_with_duplicate_keys(tmp_path):
    class Dup(Synthetic):
        def keys(self):
            return ["0", "1", "0"]

    class Empty(Synthetic):
        def keys(self):
            return []

    with pytest.raises(DataError, match="key '0' twice"):
        build(Dup(CFG), tmp_path / "d")
    with pytest.raises(DataError, match="lists no records"):
        build(Empty(CFG), tmp_path / "e")
    assert listing(tmp_path) == []


def test_data_command_builds_with_workers_and_prints_the_skip_summary(tmp_path, capsys, monkeypatch):
    from ecg_bench import cli

    package_log = logging.getLogger("ecg_bench")  # the CLI's setup_logging stops propagation: undo it afterwards
    for attr in ("handlers", "propagate", "level"):
        monkeypatch.setattr(package_log, attr, list(package_log.handlers) if attr == "handlers" else getattr(package_log, attr))

    args = ["data", "--output_dir", str(tmp_path), "--data.source.num_patients", "10", "--data.source.records_per_patient", "1",
            "--data.workers", "2"]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"store {tmp_path / 'store'}: 50 segments from 10 records\nskipped: none\n" in out
    meta = SegmentStore(tmp_path / "store").meta
    assert meta["source_settings"]["reader"] == {"num_patients": 10, "records_per_patient": 1, "seed": 0}
    assert cli.main(["data", "--data.workers", "-1", "--output_dir", str(tmp_path)]) == 2
    assert "data.workers must be >= 0" in capsys.readouterr().err


def test_real_ptbxl_records_through_the_pool(shared_data, tmp_path):
    from ecg_bench.data.sources.ptbxl import PTBXL

    src = PTBXL(data_config(source="ptbxl", data_dir=str(shared_data / "ptbxl")))
    one = build_store(src, tmp_path / "one", "ptbxl", FS, SEGMENT_LEN, shard_size=3, workers=1)
    two = build_store(src, tmp_path / "two", "ptbxl", FS, SEGMENT_LEN, shard_size=3, workers=2)  # the reader is pickled
    same_files(one.path, two.path)
    assert len(two) == 10 * 5 and two.meta["skipped"] == {}
    assert [r["record_id"] for r in two.index[::5]] == [str(i) for i in range(6000, 6010)]
    rec = src.read("records500/06000/06000_hr")
    np.testing.assert_allclose(two.signals(two.by_record("6000"))[0, :, :100], rec.signal[:, :200:2], atol=0.06)  # mV, 250 Hz


def _descendants(pid: int) -> set[int]:
    """Live (not zombie) descendants of ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_workers_fork_server_and_resource_tracker_die_with_a_killed_build(tmp_path):
    out = tmp_path / "store"
    code = f"""
import time
from ecg_bench.config import DataConfig
from ecg_bench.data.sources.synthetic import Synthetic, SyntheticOptions
from ecg_bench.data.store import build_store

class Slow(Synthetic):
    def read(self, key):
        time.sleep(0.2)
        return super().read(key)

if __name__ == "__main__":
    build_store(Slow(DataConfig(source=SyntheticOptions(num_patients=40, records_per_patient=2), seed=4)), {str(out)!r}, "synthetic", {FS}, {SEGMENT_LEN},
                shard_size=2, workers=2)
"""
    script = tmp_path / "slow_build.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    work = work_dir_for(out)
    deadline = time.time() + 60
    while not shard_paths(work, 0)[1].exists():
        assert proc.poll() is None and time.time() < deadline, "the build ended before it could be killed"
        time.sleep(0.02)
    helpers = _descendants(proc.pid)
    assert len(helpers) >= 4  # 2 workers, the fork server, the resource tracker
    os.kill(proc.pid, signal.SIGKILL)  # the build only, as the out-of-memory killer would
    proc.wait()
    deadline = time.time() + 15
    while any(_alive(p) for p in helpers) and time.time() < deadline:
        time.sleep(0.1)
    left = [p for p in helpers if _alive(p)]
    for p in left:  # do not leave them running if the test fails
        os.kill(p, signal.SIGKILL)
    assert left == [], f"processes still running after the build was killed: {left}"
