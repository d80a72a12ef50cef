"""Records per second for preprocessing PTB-XL-format records: our segment store vs the original ECG-Bench method.

Run by hand (never timed in tests), from the repository root with ../shared beside it:

    python benchmarks/bench_preprocess.py --records 500 --workers 1 2 --repeats 2
    python benchmarks/bench_preprocess.py --smoke   # seconds: 10 records, 1 worker, once (tests/test_benchmarks.py)

The 10 real PTB-XL records in ``<data-dir>/records500/06000/`` (500 Hz, 10 s, 12 leads) are read
``--records`` times in turn (after one warm-up read each, so every method reads from the page cache)
and turned into 2 s segments at 250 Hz, by

(a) ours: ``build_store`` over a Source (the PTB-XL reader ``ecg_bench.data.sources.ptbxl`` when it
    is there, else ``wfdb.rdsamp``): checked WFDB read, canonical leads, NaN/flat policy, polyphase
    anti-aliased resampling 500 -> 250 Hz, segmentation, shards, one memory-mapped signals.npy +
    index.jsonl, resumable; with each ``--workers`` count (all inside the timing: pool start-up,
    assembly, fsync);
(b) the original ECG-Bench method, REIMPLEMENTED here from its ``preprocessors/base_ecg.py``
    (``BaseECG._process_single_instance``; not imported, not our code path): ``wfdb.rdsamp``, shape
    and rate asserts, per-lead ``scipy.interpolate.interp1d(kind="cubic")`` resampling onto
    ``int(n * 250 / 500)`` points, float32, segmentation, NaN check, and one ``np.save`` of a pickled
    dict per segment (followed by its size check), one ``ProcessPoolExecutor`` future per record
    (``max_workers`` = the same ``--workers`` counts). Only the output file name differs: it starts
    with the row index, since the repeated records would otherwise overwrite each other.

Our pool's one-off start (the fork server imports numpy, scipy and the reader once per process;
the original forks its workers from the parent) is timed first and reported on its own line. Then
a table (seconds, records/s, speed relative to the original with one worker, output size), the
per-record time of each stage in one process, and how far the two methods' segments are apart (they
resample differently). On a shared machine the figures depend on its load, printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path

import numpy as np

from ecg_bench.config import DataConfig
from ecg_bench.data.record import ECGRecord
from ecg_bench.data.sources.base import Source
from ecg_bench.data.preprocess import preprocess_record
from ecg_bench.data.store import build_store
from ecg_bench.logging_utils import setup_logging

# Heavy imports (pandas, scipy.interpolate, wfdb) are made where they are used: pool workers import
# this module again, and that time would be charged to our pool.

DEFAULT_DATA = Path(os.environ.get("ECG_BENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ptbxl"


class Timer:
    """Wall-clock seconds of the ``with`` block."""

    def __enter__(self) -> Timer:
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall


# ---------------------------------------------------------------------------------------------
# (a) ours: a Source that repeats the real records


class WfdbPTBXL(Source):
    """Fallback reader when ecg_bench.data.sources.ptbxl is not there: wfdb.rdsamp, no metadata."""

    def keys(self) -> list[str]:
        root = Path(self.cfg.data_dir)
        return sorted(p.relative_to(root).with_suffix("").as_posix() for p in (root / "records500").glob("*/*.hea"))

    def read(self, key: str) -> ECGRecord:
        import wfdb

        sig, fields = wfdb.rdsamp(str(Path(self.cfg.data_dir) / key))
        return ECGRecord(Path(key).name, "p", sig.T.astype(np.float32), float(fields["fs"]), tuple(fields["sig_name"]))


def make_reader(kind: str, data_dir: Path) -> tuple[Source, str]:
    """``ptbxl``: our PTB-XL reader (falls back to wfdb when that module is missing); ``wfdb``: wfdb.rdsamp only."""
    cfg = DataConfig(source="ptbxl", data_dir=str(data_dir))
    if kind == "ptbxl":
        try:
            from ecg_bench.data.sources.ptbxl import PTBXL
        except ImportError:
            return WfdbPTBXL(cfg), "wfdb.rdsamp reader"
        return PTBXL(cfg), "PTB-XL reader"
    return WfdbPTBXL(cfg), "wfdb.rdsamp reader"


class Repeated(Source):
    """``n`` records: the inner source's records in turn, with unique record ids."""

    def __init__(self, inner: Source, n: int):
        super().__init__(inner.cfg)
        self.inner, self.n = inner, n
        self.inner_keys = inner.keys()

    def keys(self) -> list[str]:
        return [f"{i:06d}" for i in range(self.n)]

    def read(self, key: str) -> ECGRecord:
        rec = self.inner.read(self.inner_keys[int(key) % len(self.inner_keys)])
        rec.record_id = f"{rec.record_id}-{key}"
        return rec

    def settings(self) -> dict:
        return {"n": self.n}


def run_ours(reader: str, data_dir: Path, n: int, workers: int, out: Path, fs: int, seg_len: int) -> Timer:
    source = Repeated(make_reader(reader, data_dir)[0], n)
    shard_size = max(1, n // (4 * workers))  # a few shards per worker, so that the pool is busy to the end
    with Timer() as t:
        store = build_store(source, out, "ptbxl", fs, seg_len, workers=workers, shard_size=shard_size, resume=False)
    assert store.meta["num_records"] == n, store.meta["skipped"]
    return t


# ---------------------------------------------------------------------------------------------
# (b) the original ECG-Bench method, reimplemented (preprocessors/base_ecg.py, base_data="ptb")


class OriginalBaseECG:
    """Reimplementation of the original's per-record work and its process pool, for timing only."""

    def __init__(self, df, data_dir: Path, out_dir: Path, target_sf: int, segment_len: int, num_cores: int):
        self.df, self.data_dir, self.preprocessed_dir = df, data_dir, out_dir
        self.target_sf, self.segment_len, self.num_cores = target_sf, segment_len, num_cores

    def preprocess_batch(self) -> int:
        skipped = 0
        with ProcessPoolExecutor(max_workers=self.num_cores) as executor:  # default start method, as the original
            futures = [executor.submit(self._process_single_instance, idx) for idx in range(len(self.df))]
            for future in as_completed(futures):
                if future.result() is None:
                    skipped += 1
        return skipped

    def _process_single_instance(self, idx: int):
        try:
            file_path = f"{self.data_dir}/{self.df.iloc[idx]['path']}"
            report = self.df.iloc[idx]["report"]
            ecg, sf = open_ecg(file_path)
            assert sf == 500 and ecg.shape == (5000, 12)
            ecg = nsample_ecg(ecg, orig_fs=sf, target_fs=self.target_sf) if sf != self.target_sf else ecg
            ecg = ecg.astype(np.float32)
            orig_dur = ecg.shape[0] / self.target_sf
            segmented_ecg, segmented_text = segment_ecg(ecg, report, self.segment_len)
            seg_dur = self.segment_len / self.target_sf
            assert len(segmented_text) == segmented_ecg.shape[0]
            if np.any(np.isnan(segmented_ecg)) or np.any(np.isinf(segmented_ecg)):
                return None
            n_save = len(segmented_text) if orig_dur != seg_dur else 1
            for j in range(n_save):
                save_dic = {
                    "ecg": np.transpose(segmented_ecg[j], (1, 0)),
                    "report": segmented_text[j],
                    "path": self.df.iloc[idx]["path"],
                    "orig_sf": sf,
                    "target_sf": self.target_sf,
                    "segment_len": self.segment_len,
                }
                name = "_".join(self.df.iloc[idx]["path"].split("/"))
                save_path = f"{self.preprocessed_dir}/{idx}_{name}_{j}.npy"  # idx: see the module docstring
                np.save(save_path, save_dic)  # a 0-d object array: the dict is pickled
                if not (os.path.exists(save_path) and os.path.getsize(save_path) > 0):
                    return None
            return True
        except Exception as e:  # noqa: BLE001 - the original skips every failure the same way
            print(f"Error processing {idx}: {e!s}. Skipping this instance.")
            return None


def open_ecg(path: str):
    import wfdb

    signal, fields = wfdb.rdsamp(path)
    return signal, fields["fs"]


def nsample_ecg(ecg: np.ndarray, orig_fs: float, target_fs: float) -> np.ndarray:
    from scipy import interpolate

    num_samples, num_leads = ecg.shape
    duration = num_samples / orig_fs
    t_original = np.linspace(0, duration, num_samples, endpoint=True)
    t_target = np.linspace(0, duration, int(num_samples * target_fs / orig_fs), endpoint=True)
    out = np.zeros((len(t_target), num_leads))
    for lead in range(num_leads):
        f = interpolate.interp1d(t_original, ecg[:, lead], kind="cubic", bounds_error=False, fill_value="extrapolate")
        out[:, lead] = f(t_target)
    return out


def segment_ecg(ecg: np.ndarray, report: str, segment_len: int):
    n = ecg.shape[0] // segment_len
    segments = [ecg[i * segment_len : (i + 1) * segment_len, :] for i in range(n)]
    return np.array(segments), [report] * n


def run_original(data_dir: Path, n: int, workers: int, out: Path, fs: int, seg_len: int) -> Timer:
    import pandas as pd

    db = pd.read_csv(data_dir / "ptbxl_database.csv", index_col="ecg_id").rename(columns={"filename_hr": "path"})
    base = db[["path", "report"]].reset_index(drop=True)
    df = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    out.mkdir(parents=True)
    with Timer() as t:
        skipped = OriginalBaseECG(df, data_dir, out, fs, seg_len, workers).preprocess_batch()
    assert skipped == 0, f"the original method skipped {skipped} records"
    return t


# ---------------------------------------------------------------------------------------------


def pool_startup(data_dir: Path, workers: int, out: Path, fs: int, seg_len: int) -> float | None:
    """Seconds of a tiny pooled build: starts our fork server, which later builds in this process reuse."""
    if workers < 2:
        return None
    with Timer() as t:
        build_store(Repeated(make_reader("wfdb", data_dir)[0], workers), out, "ptbxl", fs, seg_len, workers=workers, shard_size=1)
    shutil.rmtree(out)
    return t.wall


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def compare_outputs(data_dir: Path, fs: int, seg_len: int) -> str:
    """How far the two methods' segments of the first record are apart (mV)."""
    inner, _ = make_reader("ptbxl", data_dir)
    key = inner.keys()[0]
    ours, _ = preprocess_record(inner.read(key), fs, seg_len)
    ecg, sf = open_ecg(str(data_dir / key))
    theirs, _ = segment_ecg(nsample_ecg(ecg, sf, fs).astype(np.float32), "", seg_len)
    diff = ours - theirs.transpose(0, 2, 1)
    rms, worst = np.sqrt(np.mean(diff**2)), np.abs(diff).max()
    return f"record {key}: ours vs original segments differ by RMS {rms:.4f} mV, max {worst:.3f} mV (different resamplers)"


def _ms(fn, items, reps: int = 5) -> float:
    """Best-of-``reps`` milliseconds per item of ``fn`` over ``items``."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / len(items)


def stage_times(data_dir: Path, fs: int, seg_len: int) -> str:
    """Milliseconds per record of each stage, in this process, over the 10 real records."""
    reader, _ = make_reader("ptbxl", data_dir)
    keys = reader.keys()
    recs = [reader.read(k) for k in keys]
    raw = [open_ecg(str(data_dir / k)) for k in keys]
    stages = {
        "ours: read (PTB-XL reader)": _ms(reader.read, keys),
        "ours: read (wfdb.rdsamp)": _ms(lambda k: WfdbPTBXL(reader.cfg).read(k), keys),
        "ours: preprocess (leads, NaN policy, polyphase resample, segment)": _ms(
            lambda r: preprocess_record(r, fs, seg_len), recs
        ),
        "original: read (wfdb.rdsamp)": _ms(lambda k: open_ecg(str(data_dir / k)), keys),
        "original: cubic interp1d resample x 12 leads": _ms(lambda e: nsample_ecg(e[0], e[1], fs), raw),
    }
    return "\n".join(f"  {name}: {ms:.2f} ms/record" for name, ms in stages.items())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=500, help="records to preprocess (the 10 real ones, repeated)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time each method with")
    ap.add_argument("--repeats", type=int, default=1, help="time each configuration this often and keep the fastest")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="PTB-XL folder (ptbxl_database.csv, records500/)")
    ap.add_argument("--target-fs", type=int, default=250, help="target sampling rate (Hz)")
    ap.add_argument("--segment-len", type=int, default=500, help="samples per segment at the target rate")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: 10 records, 1 worker, 1 repeat")
    args = ap.parse_args(argv)
    if args.smoke:
        args.records, args.workers, args.repeats = 10, [1], 1
    setup_logging("WARNING")
    reader, reader_name = make_reader("ptbxl", args.data_dir)
    for key in reader.keys():  # warm the page cache for every method
        reader.read(key)
    methods = [
        ("original ECG-Bench (reimplemented)", run_original),
        (f"ours, {reader_name}", partial(run_ours, "ptbxl")),
        ("ours, wfdb.rdsamp reader", partial(run_ours, "wfdb")),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        startup = pool_startup(args.data_dir, max(args.workers), Path(tmp) / "startup", args.target_fs, args.segment_len)
        for workers in args.workers:
            for method, run in methods:
                best = None
                for rep in range(args.repeats):
                    out = Path(tmp) / f"run-{len(rows)}-{rep}"
                    t = run(args.data_dir, args.records, workers, out, args.target_fs, args.segment_len)
                    best = t if best is None or t.wall < best.wall else best
                    mb = folder_mb(out)
                    shutil.rmtree(out)
                rows.append({"method": method, "workers": workers, "seconds": best.wall, "mb": mb})
    base = next((r["seconds"] for r in rows if r["method"].startswith("original") and r["workers"] == 1), None)
    print(f"{args.records} PTB-XL records (10 real, repeated), 500 -> {args.target_fs} Hz, segments of {args.segment_len}, "
          f"{len(os.sched_getaffinity(0))} CPU cores, load average {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    if startup is not None:
        print(f"our pool's one-off start (fork server imports numpy, scipy, the reader; once per process): {startup:.2f} s")
    print("| method | workers | seconds | records/s | vs original, 1 worker | output MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rel = f"{base / r['seconds']:.2f}x" if base else "-"
        rate = args.records / r["seconds"]
        cells = [r["method"], r["workers"], f"{r['seconds']:.2f}", f"{rate:.1f}", rel, f"{r['mb']:.1f}"]
        print("| " + " | ".join(map(str, cells)) + " |")
    print("per-record stages, one process (best of 5 passes over the 10 records):")
    print(stage_times(args.data_dir, args.target_fs, args.segment_len))
    print(compare_outputs(args.data_dir, args.target_fs, args.segment_len))
    return rows


if __name__ == "__main__":
    main()
