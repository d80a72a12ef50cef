"""The segment store: one folder per (dataset, fs, segment length).

::

    <store>/signals.npy   float32 [N, 12, L], opened with np.load(mmap_mode="r")
    <store>/index.jsonl   one JSON object per segment, row i describes signals[i]:
                          {segment_id, record_id, patient_id, segment_index, report, labels, metadata}
    <store>/meta.json     {dataset, fs, segment_len, leads, num_segments, num_records,
                           skipped: {reason: count}, skipped_records: [{record_id, reason, detail}], version}

``build_store`` preprocesses any iterable of ECGRecord (canonical leads -> NaN/flat policy ->
resample -> segment). A bad record is skipped, counted by reason and logged; the build goes on.
The store is built in ``<out_dir>.tmp-<pid>`` and renamed onto ``out_dir`` only when complete, so a
crashed build never leaves something that looks like a finished store.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.errors import DataError
from ecg_bench.jsonl import load_jsonl
from ecg_bench.logging_utils import get_logger
from ecg_bench.signals.processing import nan_policy, resample, segment, to_canonical_leads

log = get_logger(__name__)

STORE_VERSION = 1
_FILES = ("signals.npy", "index.jsonl", "meta.json")


def preprocess_record(
    record: ECGRecord, fs: float, segment_len: int, max_nan_gap_s: float = 1.0
) -> tuple[np.ndarray | None, str | None]:
    """Canonical leads -> NaN/flat policy -> resample -> segment.

    Returns ``(segments [n, 12, segment_len], None)`` or ``(None, reason)`` when the record is to
    be skipped. Raises DataError / ValueError for unreadable input (also a skip for build_store).
    """
    sig = to_canonical_leads(record.signal, record.leads)
    sig, reason = nan_policy(sig, LEADS, max_gap=int(round(max_nan_gap_s * record.fs)))
    if reason is not None:
        return None, reason
    sig = resample(sig, record.fs, fs)
    segs = segment(sig, segment_len)
    if len(segs) == 0:
        return None, f"too short: {sig.shape[1]} samples at {fs} Hz < one segment of {segment_len}"
    return segs, None


def _category(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def build_store(
    records: Iterable[ECGRecord],
    out_dir: str | Path,
    dataset: str,
    fs: float,
    segment_len: int,
    chunk_mb: float = 256.0,
    max_nan_gap_s: float = 1.0,
    extra_meta: dict[str, Any] | None = None,
) -> "SegmentStore":
    """Preprocess ``records`` into a SegmentStore at ``out_dir`` (replacing an existing one atomically).

    Segments are written in chunks of about ``chunk_mb`` MB to temporary .npy files and then copied
    into one ``signals.npy`` via ``np.lib.format.open_memmap``, so memory stays bounded by a chunk.
    NaN gaps up to ``max_nan_gap_s`` seconds are interpolated. Raises DataError if no record yields
    a segment. ``extra_meta`` (JSON-serialisable, e.g. the source settings) is stored in meta.json.
    """
    if int(segment_len) != segment_len or segment_len <= 0:
        raise ValueError(f"segment_len must be a positive integer, got {segment_len}")
    if fs <= 0:
        raise ValueError(f"fs must be positive, got {fs}")
    segment_len = int(segment_len)
    chunk_segments = max(1, int(chunk_mb * 2**20) // (len(LEADS) * segment_len * 4))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        meta = _build_into(tmp, records, dataset, fs, segment_len, chunk_segments, max_nan_gap_s, extra_meta or {})
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(meta["skipped"].items())) or "none"
    log.info(
        "store %s: %d segments from %d records of %s; skipped %d records (%s)",
        out_dir,
        meta["num_segments"],
        meta["num_records"],
        dataset,
        len(meta["skipped_records"]),
        skipped,
    )
    return SegmentStore(out_dir)


def _build_into(
    tmp: Path,
    records: Iterable[ECGRecord],
    dataset: str,
    fs: float,
    segment_len: int,
    chunk_segments: int,
    max_nan_gap_s: float,
    extra_meta: dict[str, Any],
) -> dict[str, Any]:
    chunk_paths: list[Path] = []
    pending: list[np.ndarray] = []
    n_pending = 0
    n_segments = 0
    n_records = 0
    skipped: Counter[str] = Counter()
    skipped_records: list[dict[str, str]] = []

    def flush() -> None:
        nonlocal pending, n_pending
        if pending:
            path = tmp / f"chunk-{len(chunk_paths):05d}.npy"
            np.save(path, np.concatenate(pending))
            chunk_paths.append(path)
            pending, n_pending = [], 0

    total = len(records) if hasattr(records, "__len__") else None  # type: ignore[arg-type]
    with open(tmp / "index.jsonl", "w") as index:
        for record in tqdm(records, total=total, desc=f"building {dataset} store", unit="rec"):
            rid = getattr(record, "record_id", "?")
            try:
                segs, reason = preprocess_record(record, fs, segment_len, max_nan_gap_s)
                category = _category(reason) if reason else ""
            except (DataError, ValueError) as e:
                segs, category, reason = None, getattr(e, "reason", type(e).__name__), str(e)
            if segs is None:
                skipped[category] += 1
                skipped_records.append({"record_id": rid, "reason": category, "detail": reason})
                log.warning("skipping record %s (%s): %s", rid, category, reason)
                continue
            for k in range(len(segs)):
                row = {
                    "segment_id": n_segments + k,
                    "record_id": record.record_id,
                    "patient_id": record.patient_id,
                    "segment_index": k,
                    "report": record.report,
                    "labels": list(record.labels),
                    "metadata": record.metadata,
                }
                index.write(json.dumps(row) + "\n")
            n_segments += len(segs)
            n_records += 1
            pending.append(segs.astype(np.float32, copy=False))
            n_pending += len(segs)
            if n_pending >= chunk_segments:
                flush()
        flush()

    if n_segments == 0:
        raise DataError(
            f"no record of {dataset} produced a segment of {segment_len} samples at {fs} Hz; "
            f"skipped: {dict(skipped) or 'nothing (no records)'}"
        )
    signals = np.lib.format.open_memmap(
        tmp / "signals.npy", mode="w+", dtype=np.float32, shape=(n_segments, len(LEADS), segment_len)
    )
    row = 0
    for path in chunk_paths:
        chunk = np.load(path)
        signals[row : row + len(chunk)] = chunk
        row += len(chunk)
        path.unlink()
    signals.flush()
    del signals

    meta = {
        "dataset": dataset,
        "fs": fs,
        "segment_len": segment_len,
        "leads": list(LEADS),
        "num_segments": n_segments,
        "num_records": n_records,
        "skipped": dict(sorted(skipped.items())),
        "skipped_records": skipped_records,
        "version": STORE_VERSION,
        **extra_meta,
    }
    _write_json(tmp / "meta.json", meta)  # written last: its presence marks a complete store
    return meta


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished ``src`` onto ``dst``. os.replace cannot overwrite a non-empty directory, so an
    existing store is first renamed aside and deleted once the new one is in place."""
    old = None
    if dst.exists():
        old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class SegmentStore:
    """Read access to a built store: memory-mapped signals plus the per-segment index."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"segment store not found: {self.path}")
        for name in _FILES:
            if not (self.path / name).is_file():
                raise FileNotFoundError(f"segment store {self.path} is incomplete: {self.path / name} not found")
        self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text())
        self.index: list[dict[str, Any]] = _read_index(self.path / "index.jsonl")
        self._open()
        n, shape = len(self.index), self._signals.shape
        if shape[0] != n or n != self.meta.get("num_segments") or shape[1:] != (len(LEADS), self.segment_len):
            raise DataError(
                f"segment store {self.path} is inconsistent: signals.npy {shape}, index.jsonl {n} rows, "
                f"meta.json num_segments={self.meta.get('num_segments')} segment_len={self.segment_len}"
            )
        self._by_record: dict[str, list[int]] | None = None

    def _open(self) -> None:
        self._signals = np.load(self.path / "signals.npy", mmap_mode="r")

    # A memmap would be pickled with all its data; DataLoader workers reopen the file instead.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_signals"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    @staticmethod
    def exists(path: str | Path) -> bool:
        """True if ``path`` holds a complete store (all three files; meta.json is written last)."""
        p = Path(path)
        return all((p / name).is_file() for name in _FILES)

    @property
    def fs(self) -> float:
        return self.meta["fs"]

    @property
    def segment_len(self) -> int:
        return int(self.meta["segment_len"])

    def __len__(self) -> int:
        return len(self.index)

    def _check(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"segment id {i} out of range [0, {len(self)}) in store {self.path}")
        return int(i)

    def signal(self, i: int) -> np.ndarray:
        """Segment ``i`` as a float32 [12, L] array (a copy, safe to modify)."""
        return np.array(self._signals[self._check(i)])

    def signals(self, indices: Sequence[int]) -> np.ndarray:
        """Segments as a float32 [n, 12, L] array."""
        idx = np.asarray([self._check(int(i)) for i in indices], dtype=np.int64)
        return np.asarray(self._signals[idx]).reshape(len(idx), len(LEADS), self.segment_len)

    def by_record(self, record_id: str) -> list[int]:
        """Segment ids of one record, in time order (empty if the record is not in the store)."""
        if self._by_record is None:
            groups: dict[str, list[int]] = {}
            for row in self.index:
                groups.setdefault(row["record_id"], []).append(row["segment_id"])
            self._by_record = groups
        return list(self._by_record.get(record_id, []))

    def __repr__(self) -> str:
        name, path = self.meta.get("dataset"), str(self.path)
        return f"SegmentStore({path!r}, dataset={name!r}, n={len(self)}, fs={self.fs}, L={self.segment_len})"


def _read_index(path: Path) -> list[dict[str, Any]]:
    rows = load_jsonl(path)
    for i, row in enumerate(rows):
        if row.get("segment_id") != i:
            raise DataError(f"{path}: row {i + 1} has segment_id {row.get('segment_id')!r}, expected {i}")
    return rows
