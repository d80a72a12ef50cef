"""The segment store: one folder per (dataset, fs, segment length).

::

    <store>/signals.npy   float32 [N, 12, L], opened with np.load(mmap_mode="r")
    <store>/index.jsonl   one JSON object per segment, row i describes signals[i]:
                          {segment_id, record_id, patient_id, segment_index, report, labels, metadata}
    <store>/meta.json     {dataset, fs, segment_len, leads, num_segments, num_records, max_nan_gap_s,
                           skipped: {reason: count}, skipped_records: [{record_id, key, reason, detail}],
                           ...extra_meta, format_version}

``build_store`` preprocesses a Source (in parallel, resumable: see ``ecg_bench.data.preprocess``, which
never imports this module: the dependency is one-way, store -> preprocess) or
any iterable of ECGRecord: canonical leads -> NaN/flat policy -> resample -> segment. A bad record
is skipped, counted by reason and logged; the build goes on and ends with a summary of the skips.
The store is assembled in ``<out_dir>.tmp-<pid>`` and renamed onto ``out_dir`` only when complete,
so a crashed build never leaves something that looks like a finished store.

Safety: a store folder carries ecg-bench's marker (``ecg_bench.folders``); an existing ``out_dir``
is replaced only if it is empty or such a store, never a folder the tool did not make, and never a
folder that is, contains or lies inside the source's ``data_dir``. One writer at a time: a build
holds ``<out_dir>.lock`` (``store_lock``) from start to finish; a second one waits for it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock
from filelock import Timeout as LockTimeout

from ecg_bench import folders
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.jsonl import load_jsonl
from ecg_bench.logging_utils import get_logger
from ecg_bench.safe_files import check_format_version, read_json_file

if TYPE_CHECKING:
    from ecg_bench.config import RunConfig
    from ecg_bench.data.sources.base import Source

log = get_logger(__name__)

_FILES = ("signals.npy", "index.jsonl", "meta.json")


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def build_store(
    records: Source | Iterable[ECGRecord],
    out_dir: str | Path,
    dataset: str,
    fs: float,
    segment_len: int,
    chunk_mb: float = 256.0,
    max_nan_gap_s: float | None = None,
    extra_meta: dict[str, Any] | None = None,
    *,
    workers: int = 0,
    shard_size: int = 256,
    resume: bool = True,
    lock_timeout: float | None = None,
) -> "SegmentStore":
    """Preprocess ``records`` into a SegmentStore at ``out_dir`` (replacing an existing one atomically).

    ``records`` is a Source or any iterable of ECGRecord. A Source is preprocessed in shards of
    ``shard_size`` records by ``workers`` processes (0 = all cores, 1 = this process), resumably:
    finished shards are kept in ``<out_dir>.partial/`` and reused by a re-run with the same settings
    (``resume=False`` starts over); see ``ecg_bench.data.preprocess``. The store is the same whatever
    the worker count. A plain iterable is preprocessed in this process, in chunks of about
    ``chunk_mb`` MB, and is not resumable.

    NaN gaps up to ``max_nan_gap_s`` seconds are interpolated. A bad record is skipped and counted
    by reason (meta.json ``skipped``, ``skipped_records``); the build goes on. Raises DataError if no
    record yields a segment. ``extra_meta`` (JSON-serialisable, e.g. the source settings) is stored
    in meta.json.

    ``out_dir`` must be missing, empty or a store ecg-bench made (FolderError otherwise, before any
    work). The build holds ``<out_dir>.lock``; another build of the same folder waits for it (up to
    ``lock_timeout`` seconds, None = as long as it takes).
    """
    from ecg_bench.data import preprocess as pp  # imports the source registry, which may import readers
    from ecg_bench.data.shards import remove_stale_temporaries
    from ecg_bench.data.sources.base import Source

    if int(segment_len) != segment_len or segment_len <= 0:
        raise ValueError(f"segment_len must be a positive integer, got {segment_len}")
    if fs <= 0:
        raise ValueError(f"fs must be positive, got {fs}")
    if max_nan_gap_s is None:
        max_nan_gap_s = pp.DEFAULT_MAX_NAN_GAP_S
    params = pp.Params(fs=fs, segment_len=int(segment_len), max_nan_gap_s=max_nan_gap_s)
    out_dir = Path(out_dir)
    data_dir = str(getattr(getattr(records, "cfg", None), "data_dir", "") or "") if isinstance(records, Source) else ""
    if data_dir:
        folders.check_apart(out_dir, data_dir, "the store folder", "data.data_dir")
    folders.check_replaceable(out_dir, "store")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(out_dir, lock_timeout):
        folders.check_replaceable(out_dir, "store")  # again: it may have changed while we waited
        remove_stale_temporaries(out_dir.parent, f"{out_dir.name}.tmp-*")
        remove_stale_temporaries(out_dir.parent, f"{out_dir.name}.old-*")
        extra_meta = extra_meta or {}
        work, n_shards = None, 0
        if isinstance(records, Source):
            work, n_shards = pp.preprocess_source(records, out_dir, dataset, params, extra_meta, workers, shard_size, resume)
        tmp = folders.make_temp(out_dir, "store")
        try:
            if work is None:
                chunk_segments = max(1, int(chunk_mb * 2**20) // (len(LEADS) * params.segment_len * 4))
                shards = folders.claim(tmp / "shards", "work")
                n_shards = pp.preprocess_records(records, shards, dataset, params, chunk_segments)
                meta = pp.assemble(shards, n_shards, tmp, dataset, params, extra_meta)
                folders.remove(shards, "work")
            else:
                meta = pp.assemble(work, n_shards, tmp, dataset, params, extra_meta)
            _write_json(tmp / "meta.json", meta)  # written last: its presence marks a complete store
            folders.replace(tmp, out_dir, "store")
        except BaseException:
            folders.remove(tmp, "store", ignore_errors=True)
            raise
        if work is not None:
            folders.remove(work, "work", ignore_errors=True)
    _log_summary(out_dir, meta)
    return SegmentStore(out_dir)


_LOCKS: dict[str, FileLock] = {}
LOCK_LOG_EVERY_S = 60.0
"""While waiting for another build's lock, log a line this often."""


def lock_path(out_dir: str | Path) -> Path:
    """The lock file of the store at ``out_dir``: ``<out_dir>.lock`` (beside it: the store itself is replaced)."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f"{out_dir.name}.lock")


def _holder(owner: Path) -> str:
    try:
        o = read_json_file(owner, "lock owner (JSON object)")
        return f"pid {o['pid']} on {o['host']} since {o['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def store_lock(out_dir: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the lock of the store at ``out_dir`` (re-entrant within this process).

    Another process holding it: log "waiting for the lock on <store> held by pid N" once, then a
    line every ``LOCK_LOG_EVERY_S`` seconds; after ``timeout`` seconds (None = never) raise DataError.
    """
    path = lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    lock = _LOCKS.setdefault(key, FileLock(str(path), thread_local=False))
    owner = path.with_name(path.name + ".owner")
    first = not lock.is_locked
    try:
        lock.acquire(timeout=0)
    except LockTimeout:
        holder, t0 = _holder(owner), time.monotonic()
        log.info("waiting for the lock on %s held by %s (another build of this store)", out_dir, holder)
        while True:
            waited = time.monotonic() - t0
            if timeout is not None and waited >= timeout:
                raise DataError(
                    f"another process ({holder}) is building the store {out_dir}; gave up waiting after {waited:.0f} s. "
                    f"Run again when it has finished (it will then be reused), or remove {path} if that process is gone"
                ) from None
            step = LOCK_LOG_EVERY_S if timeout is None else min(LOCK_LOG_EVERY_S, timeout - waited)
            try:
                lock.acquire(timeout=max(step, 0.01))
                break
            except LockTimeout:
                log.info("still waiting for the lock on %s held by %s (%.0f s)", out_dir, _holder(owner), time.monotonic() - t0)
        log.info("got the lock on %s after %.0f s", out_dir, time.monotonic() - t0)
    try:
        if first:
            since = time.strftime("%Y-%m-%d %H:%M:%S")
            owner.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n")
        yield
    finally:
        if first:
            owner.unlink(missing_ok=True)
        lock.release()


def skip_summary(meta: dict[str, Any], examples: int = 3) -> str:
    """Human-readable skip summary of a store's meta: one line per reason with a few example records.

    Skips that are not records (a folder that could not be walked: ``sources.base.NOT_RECORDS``)
    are counted apart from the records and shown with their paths.
    """
    from ecg_bench.data.sources.base import NOT_RECORDS

    records = meta.get("skipped_records") or []
    if not records:
        return "skipped: none"
    others = [r for r in records if r.get("reason") in NOT_RECORDS]
    n_rec = len(records) - len(others)
    total = n_rec + int(meta.get("num_records", 0))
    head = f"skipped {n_rec} of {total} records"
    if others:
        head += f", and {len(others)} folder{'s' if len(others) != 1 else ''} that could not be walked"
    lines = [head + ":"]
    for reason, count in sorted((meta.get("skipped") or {}).items(), key=lambda kv: (-kv[1], kv[0])):
        listed = [r for r in records if r.get("reason") == reason]
        if reason in NOT_RECORDS:  # every folder, with its path: the records in it are not counted anywhere else
            lines.append(f"  {reason}: {count}")
            lines.extend(f"    {r['detail']}" for r in listed)
            continue
        eg = "; ".join(f"{r['record_id']}: {r['detail']}" for r in listed[:examples])
        lines.append(f"  {reason}: {count}" + (f" (e.g. {eg})" if eg else ""))
    return "\n".join(lines)


def _log_summary(out_dir: Path, meta: dict[str, Any]) -> None:
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(meta["skipped"].items())) or "none"
    log.info(
        "store %s: %d segments from %d records of %s; skipped %d records (%s)",
        out_dir,
        meta["num_segments"],
        meta["num_records"],
        meta["dataset"],
        len(meta["skipped_records"]),
        skipped,
    )
    if meta["skipped_records"]:
        log.warning("%s: %s", meta["dataset"], skip_summary(meta))


class SegmentStore:
    """Read access to a built store: memory-mapped signals plus the per-segment index."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"segment store not found: {self.path}")
        for name in _FILES:
            if not (self.path / name).is_file():
                raise FileNotFoundError(f"segment store {self.path} is incomplete: {self.path / name} not found")
        from ecg_bench.data.preprocess import STORE_VERSION  # the writer of meta.json owns its version

        meta = read_json_file(self.path / "meta.json", "segment store meta.json")
        check_format_version(meta, self.path / "meta.json", STORE_VERSION, "a segment store's meta.json")
        self.meta: dict[str, Any] = meta
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


# ------------------------------------------------------------------ reusing a store


def absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


def setting_changes(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: old -> new`` for each setting that differs (``ignore``d keys left out)."""
    keys = sorted(k for k in {*old, *new} if k not in ignore and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


def source_settings(cfg: RunConfig, source: Any = None) -> dict[str, Any]:
    """The settings a store depends on; a store built with other settings is rebuilt, not reused.

    ``source`` (a Source) adds its own ``settings()`` under "reader", JSON-normalised so that the
    value compares equal to the one read back from meta.json.
    """
    d = cfg.data
    # The keys stores have recorded since before sources had options (num_patients / records_per_patient were
    # data fields then, saved with their defaults for every source), so an existing store still matches.
    settings = {"source": d.source.type, "data_dir": absolute(d.data_dir),  # the same folder however it was spelled
                "num_patients": getattr(d.source, "num_patients", 120),
                "records_per_patient": getattr(d.source, "records_per_patient", 2),
                "target_fs": d.target_fs, "segment_seconds": d.segment_seconds, "seed": d.seed}  # fmt: skip
    if source is not None:
        settings["reader"] = json.loads(json.dumps(source.settings()))
    return settings


def store_status(sdir: Path, settings: dict[str, Any], fingerprint: dict[str, Any]) -> tuple[str, str]:
    """Whether the store at ``sdir`` can serve ``settings``: (status, detail) with status one of
    missing, current, other_settings, source_changed."""
    if not SegmentStore.exists(sdir):
        return "missing", ""
    meta = SegmentStore(sdir).meta
    old = meta.get("source_settings")
    if not isinstance(old, dict):
        return "other_settings", "no source_settings in its meta.json"
    old = {**old, "data_dir": absolute(old.get("data_dir", ""))}
    changed = setting_changes(old, settings)
    if changed:
        return "other_settings", "; ".join(changed)
    got = meta.get("source_fingerprint")
    if not isinstance(got, dict):
        return "other_settings", "no source_fingerprint in its meta.json"
    if got != fingerprint:
        keys = [k for k in ("files", "bytes", "newest_mtime_ns") if got.get(k) != fingerprint.get(k)]
        detail = ", ".join(f"{k} {got.get(k)} -> {fingerprint.get(k)}" for k in keys) or "same counts, other file names or times"
        return "source_changed", detail
    return "current", ""


def open_store(cfg: RunConfig, src: Any, sdir: Path) -> SegmentStore:
    """Reuse the store at ``sdir`` if it was built with these settings from the same source files; else build it.

    Holds the store's lock while deciding and building, so a second writer waits and then reuses
    what the first built. A store with other settings is never silently replaced: refused unless
    ``data.rebuild``. Changed source files (a record repaired or added) rebuild it, with a log line.
    """
    d = cfg.data
    settings = source_settings(cfg, src)
    if d.data_dir:  # refusals before the lock: no lock file is left in a folder that is not ours
        folders.check_apart(sdir, d.data_dir, "the store folder", "data.data_dir")
    folders.check_replaceable(sdir, "store")
    with store_lock(sdir):
        fingerprint = src.fingerprint()
        status, detail = store_status(sdir, settings, fingerprint)
        if d.rebuild:
            log.info("data.rebuild: building the segment store %s from scratch", sdir)
        elif status == "current":
            store = SegmentStore(sdir)
            log.info("reusing segment store %s (%d segments)", sdir, len(store))
            return store
        elif status == "other_settings":
            raise ConfigError([
                f"data.store_dir: {sdir} holds a segment store built with other settings ({detail}); it is not replaced "
                f"silently: choose another data.store_dir (or another --output_dir), or pass --data.rebuild true to replace it"
            ])  # fmt: skip
        elif status == "source_changed":
            log.info("the source files of segment store %s changed since it was built (%s); rebuilding it", sdir, detail)
        seg_len = int(round(d.segment_seconds * d.target_fs))
        extra = {"source_settings": settings, "source_fingerprint": fingerprint}
        return build_store(src, sdir, d.source.type, d.target_fs, seg_len, extra_meta=extra, workers=d.workers,
                           resume=not d.rebuild)  # fmt: skip
