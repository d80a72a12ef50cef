"""The preprocessing engine behind ``build_store``: shards of records, processed in parallel, resumable.

A source's keys are cut into fixed-size shards (``shard_size`` records, in key order). Each shard is
read and preprocessed by one worker process and written to the work folder ``<store>.partial/``::

    <store>.partial/settings.json       what the shards depend on (a different value starts over)
    <store>.partial/shard-00012.npy     float32 [segments, 12, L] of the shard's kept records
    <store>.partial/shard-00012.jsonl   one row per record, in key order: a kept record
                                        {key, record_id, patient_id, report, labels, metadata, num_segments}
                                        or a skipped one {key, record_id, skipped, detail}

Both files are written under a temporary name and renamed; the .jsonl is renamed last, so a shard
whose .jsonl exists is complete. A killed run leaves finished shards behind and nothing that looks
like a finished store; the next run with the same settings redoes only the missing shards. When all
are done they are concatenated in key order (segment ids follow key order, so the store is the same
whatever the number of workers and however often the run was interrupted) into the store, which is
renamed into place atomically; then the work folder is removed.

The work folder carries ecg-bench's marker (``ecg_bench.folders``): only such a folder is ever
discarded or removed, and a killed run's temporaries are deleted only when they carry it too.
Worker processes die with the process that started them (even after a ``kill -9`` of it), and
with them the fork server and the resource tracker: nothing keeps running or holding memory.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.shards import (
    _json_default,
    _shard_segments,
    keys_digest,
    open_work_dir,
    read_shard_rows,
    shard_is_complete,
    shard_paths,
    work_dir_for,
    write_shard,
)
from ecg_bench.data.sources.base import Source
from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger, progress
from ecg_bench.safe_files import read_json_file
from ecg_bench.signals.io import TOO_LARGE
from ecg_bench.signals.processing import nan_policy, resample, segment, to_canonical_leads

log = get_logger(__name__)

WORK_VERSION = 1
"""Version of the work-folder layout; a folder written by another version is started over."""
MAX_TRACEBACKS = 5
"""Unexpected exceptions whose full traceback is logged per build (the rest get one line each)."""
STORE_VERSION = 1
"""The one store format (meta.json ``format_version``) that ``assemble`` writes and ``SegmentStore`` reads."""
DEFAULT_MAX_NAN_GAP_S = 1.0
"""NaN gaps up to this many seconds are interpolated (``build_store``'s default); a longer one skips the record."""


def preprocess_record(
    record: ECGRecord, fs: float, segment_len: int, max_nan_gap_s: float = DEFAULT_MAX_NAN_GAP_S
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


def category_of(reason: str) -> str:
    """The count key of a skip reason: ``"flat lead: V2"`` -> ``"flat lead"``."""
    return reason.split(":", 1)[0].strip()


@dataclass(frozen=True)
class Params:
    """What every record is preprocessed with."""

    fs: float
    segment_len: int
    max_nan_gap_s: float


@dataclass
class ShardResult:
    """What one shard produced (the shard's files hold the data; this is for progress and logs)."""

    index: int
    num_keys: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    tracebacks: list[tuple[str, str]] = field(default_factory=list)
    """(key, formatted traceback) of exceptions that were not DataErrors: possibly a bug, not bad data."""


# --------------------------------------------------------------------------------------------------
# One record


def _kept_row(key: str, record: ECGRecord, num_segments: int) -> dict[str, Any]:
    return {
        "key": key,
        "record_id": record.record_id,
        "patient_id": record.patient_id,
        "report": record.report,
        "labels": list(record.labels),
        "metadata": record.metadata,
        "num_segments": num_segments,
    }


def _skip_row(key: str, record_id: str, category: str, detail: str) -> dict[str, str]:
    return {"key": key, "record_id": record_id, "skipped": category, "detail": detail}


def preprocess_one(record: ECGRecord, key: str, params: Params) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Preprocess a record that has been read: ``(segments, kept row)`` or ``(None, skip row)``.

    DataError / ValueError from preprocessing (missing lead, wrong shape, ...) are skips too.
    """
    try:
        segs, reason = preprocess_record(record, params.fs, params.segment_len, params.max_nan_gap_s)
    except (DataError, ValueError) as e:
        return None, _skip_row(key, record.record_id, getattr(e, "reason", None) or type(e).__name__, str(e))
    except MemoryError:
        return None, _skip_row(key, record.record_id, TOO_LARGE, "MemoryError while preprocessing it")
    if segs is None:
        return None, _skip_row(key, record.record_id, category_of(reason or "skipped"), reason or "skipped")
    return segs.astype(np.float32, copy=False), _kept_row(key, record, len(segs))


def read_and_preprocess(source: Source, key: str, params: Params) -> tuple[np.ndarray | None, dict[str, Any], str | None]:
    """Read ``key`` and preprocess it: ``(segments or None, row, traceback or None)``.

    A DataError from ``read`` is a skip counted under its ``reason``; a MemoryError is a ``too large`` skip
    (readers refuse oversized records before allocating; this catches what they cannot foresee). Any other exception (a corrupt
    file can make a parser raise anything: OSError, struct.error, IndexError, ...) is a skip under
    "unreadable file" too, but its traceback is returned so the caller can log it: it may be a bug.
    """
    try:
        record = source.read(key)
    except DataError as e:
        return None, _skip_row(key, key, getattr(e, "reason", None) or type(e).__name__, str(e)), None
    except MemoryError:  # one record too big for this machine (a decompression bomb...) must not end the build
        return None, _skip_row(key, key, TOO_LARGE, "MemoryError while reading it: needs more memory than is available"), None
    except Exception as e:  # noqa: BLE001 - see the docstring: reported, not hidden
        return None, _skip_row(key, key, "unreadable file", f"{type(e).__name__}: {e}"), traceback.format_exc()
    segs, row = preprocess_one(record, key, params)
    return segs, row, None


# --------------------------------------------------------------------------------------------------
# Shard files


# --------------------------------------------------------------------------------------------------
# Workers


def process_shard(
    source: Source, keys: Sequence[str], folder: Path, index: int, params: Params, on_record: Callable[[], Any] | None = None
) -> ShardResult:
    """Read and preprocess ``keys`` and write them as shard ``index`` of ``folder``; ``on_record`` is called after each."""
    segments: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    result = ShardResult(index, len(keys))
    for key in keys:
        segs, row, tb = read_and_preprocess(source, key, params)
        rows.append(row)
        if segs is not None:
            segments.append(segs)
        else:
            result.skipped.append({k: row[k] for k in ("key", "record_id", "skipped", "detail")})
        if tb is not None:
            result.tracebacks.append((key, tb))
        if on_record is not None:
            on_record()
    write_shard(folder, index, segments, rows, params.segment_len)
    return result


_WORKER: dict[str, Any] = {}


def _init_worker(source: Source, folder: Path, params: Params, parent_pid: int | None = None, alive=None) -> None:
    # The source is sent once per worker process, not once per shard (it may hold loaded tables).
    _WORKER.update(source=source, folder=folder, params=params)
    # Ctrl-C reaches the whole process group: the parent stops the pool; a worker finishes its shard quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        die_with_parent(parent_pid, alive)


PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL_S = 0.5


def die_with_parent(parent_pid: int, alive=None) -> None:
    """End this worker as soon as the process that started the pool is gone, however it ended.

    A forkserver worker's parent is the fork server, not the pool's owner, and the fork server
    lives as long as any worker does: after a ``kill -9`` of the owner, workers blocked on the task
    queue, the fork server and the resource tracker would run forever. So (1) on Linux the kernel
    kills this worker if its parent (the fork server) dies (``PR_SET_PDEATHSIG``), and (2) a daemon
    thread exits the worker when ``alive`` (the read end of a pipe whose write end only the owner
    holds) reports end-of-file, or when ``parent_pid`` no longer exists. With every worker gone the
    fork server sees its last client leave and exits; then the resource tracker does.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            try:
                if alive is not None and alive.poll(WATCHDOG_INTERVAL_S):
                    alive.recv_bytes()  # the owner never writes: readable means end-of-file
                elif alive is None:
                    threading.Event().wait(WATCHDOG_INTERVAL_S)
                os.kill(parent_pid, 0)
            except (EOFError, OSError, ProcessLookupError):
                os._exit(1)

    threading.Thread(target=watch, name="ecg-bench-parent-watch", daemon=True).start()


def _run_shard(index: int, keys: list[str]) -> ShardResult:
    return process_shard(_WORKER["source"], keys, _WORKER["folder"], index, _WORKER["params"])


def resolve_workers(workers: int) -> int:
    """``workers`` processes, or every CPU core when ``workers`` is 0 (or negative)."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))  # respects taskset / container CPU limits
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------
# The work folder


def work_settings(source: Source, keys: Sequence[str], dataset: str, params: Params, shard_size: int, extra_meta: dict) -> dict:
    """Everything the shards depend on, JSON-normalised (tuples become lists) so it compares equal after a reload."""
    # Not the source's class: a subclass that only instruments reads (tests, profiling) is the same data.
    s = {
        "version": WORK_VERSION,
        "dataset": dataset,
        "fs": params.fs,
        "segment_len": params.segment_len,
        "max_nan_gap_s": params.max_nan_gap_s,
        "shard_size": shard_size,
        "source_settings": source.settings(),
        "data_dir": str(getattr(getattr(source, "cfg", None), "data_dir", "")),
        "extra_meta": extra_meta,
        "num_keys": len(keys),
        "keys_sha256": keys_digest(keys),
    }
    return json.loads(json.dumps(s, default=_json_default))


# --------------------------------------------------------------------------------------------------
# The build


def _checked_keys(source: Source) -> list[str]:
    keys = [str(k) for k in source.keys()]
    if not keys:
        raise DataError(f"source {type(source).__name__} lists no records (check data_dir and the expected folder layout)")
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            raise DataError(f"source {type(source).__name__} lists key {k!r} twice; keys must be unique")
        seen.add(k)
    return keys


class _Reporter:
    """Progress bar and per-shard logging in the parent process."""

    def __init__(self, total: int, done: int, dataset: str):
        self.bar = progress(total=total, initial=done, desc=f"preprocessing {dataset}", unit="rec", dynamic_ncols=True)
        self.tracebacks = 0

    def __call__(self, result: ShardResult, counted: bool = False) -> None:
        for s in result.skipped:
            log.warning("skipping record %s (%s): %s", s["record_id"], s["skipped"], s["detail"])
        for key, tb in result.tracebacks:
            self.tracebacks += 1
            if self.tracebacks <= MAX_TRACEBACKS:
                log.warning("record %s raised an unexpected exception (corrupt file or a reader bug?):\n%s", key, tb)
            elif self.tracebacks == MAX_TRACEBACKS + 1:
                log.warning("more unexpected exceptions; their tracebacks are not logged (see skipped_records in meta.json)")
        if not counted:
            self.bar.update(result.num_keys)

    def close(self) -> None:
        self.bar.close()


def _run_inline(source: Source, shards: list[list[str]], pending: list[int], work: Path, params: Params, report) -> None:
    for i in pending:  # in this process the bar can move record by record
        report(process_shard(source, shards[i], work, i, params, on_record=lambda: report.bar.update(1)), counted=True)


def _pool_context(source: Source):
    """forkserver where there is one, else spawn; never fork, since the parent may hold threads (torch, BLAS).

    The fork server imports the engine and the source's module once; each worker is then forked from
    it, instead of every spawned worker importing numpy, scipy and the reader again (~1 s each).
    Workers still import the main module (the ``ecg-bench`` script, or your script: keep its
    top-level imports light and its work under ``if __name__ == "__main__":``).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        # The first preload ignores SIGINT in the server and so in every worker it forks; this process keeps its
        # own handler throughout, so a Ctrl-C at any moment, also while the server starts, stops the build here.
        ctx.set_forkserver_preload(["ecg_bench.data._no_sigint", __name__, type(source).__module__])
        forkserver.ensure_running()
        return ctx
    return multiprocessing.get_context("spawn")


def _submit(ex: ProcessPoolExecutor, index: int, keys: list[str]):
    """``ex.submit`` with Ctrl-C held back until it returns: a submit may launch a worker, and a launch cut in
    half leaves a child that starts after this process has gone and fails with a traceback."""
    if threading.current_thread() is not threading.main_thread():
        return ex.submit(_run_shard, index, keys)
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        return ex.submit(_run_shard, index, keys)
    finally:
        signal.signal(signal.SIGINT, old)
        if caught and callable(old):
            old(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt, now that the launch is complete


def _run_pool(source, shards, pending, work, params, report, n_workers: int) -> None:
    ctx = _pool_context(source)
    alive_r, alive_w = ctx.Pipe(duplex=False)  # the workers get the read end; EOF there = this process is gone
    initargs = (source, work, params, os.getpid(), alive_r)
    ex = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker, initargs=initargs)
    try:
        todo = iter(pending)
        running = set()
        # A bounded queue of 2 shards per worker: cancelling on Ctrl-C is then immediate.
        for i in todo:
            running.add(_submit(ex, i, shards[i]))
            if len(running) >= 2 * n_workers:
                break
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                report(fut.result())
                nxt = next(todo, None)
                if nxt is not None:
                    running.add(_submit(ex, nxt, shards[nxt]))
    except BaseException as e:
        # Stop now (Ctrl-C, a dead worker, an error): closing the pipe ends every worker within a moment, without
        # finishing its shard; waiting for them lets a worker that was still starting read what it was sent.
        alive_w.close()
        ex.shutdown(wait=True, cancel_futures=True)
        if isinstance(e, BrokenProcessPool):
            raise DataError(
                f"a preprocessing worker died (killed, or out of memory?); finished shards are kept in {work}: "
                f"re-run to resume, or use fewer workers"
            ) from e
        raise
    else:
        ex.shutdown()
    finally:
        alive_r.close()
        alive_w.close()


def preprocess_source(
    source: Source,
    out_dir: Path,
    dataset: str,
    params: Params,
    extra_meta: dict[str, Any],
    workers: int = 0,
    shard_size: int = 256,
    resume: bool = True,
) -> tuple[Path, int]:
    """Bring every shard of ``source`` up to date in ``<out_dir>.partial``; return (that folder, number of shards).

    ``workers`` processes (0 = all cores; 1, or a single pending shard, runs in this process).
    Finished shards of an earlier run with the same settings are kept unless ``resume`` is False.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    keys = _checked_keys(source)
    work = work_dir_for(out_dir)
    open_work_dir(work, work_settings(source, keys, dataset, params, shard_size, extra_meta), resume)
    shards = [keys[i : i + shard_size] for i in range(0, len(keys), shard_size)]
    done = [i for i in range(len(shards)) if shard_is_complete(work, i, shards[i], params.segment_len)]
    pending = sorted(set(range(len(shards))) - set(done))
    n_done = sum(len(shards[i]) for i in done)
    if done:
        log.info("resuming %s: %d of %d shards (%d records) already done in %s", dataset, len(done), len(shards), n_done, work)
    n_workers = min(resolve_workers(workers), len(pending))
    n_todo = len(keys) - n_done
    log.info("preprocessing %d records of %s in %d shards with %d worker(s)", n_todo, dataset, len(pending), n_workers)
    report = _Reporter(len(keys), n_done, dataset)
    try:
        if n_workers <= 1:
            _run_inline(source, shards, pending, work, params, report)
        else:
            _run_pool(source, shards, pending, work, params, report, n_workers)
    finally:
        report.close()
    return work, len(shards)


def preprocess_records(records: Iterable[ECGRecord], folder: Path, dataset: str, params: Params, chunk_segments: int) -> int:
    """Preprocess an iterable of records in this process into shards of about ``chunk_segments`` segments.

    Returns the number of shards written to ``folder``. Keys are the record ids.
    """
    segments: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    n_pending = n_shards = 0
    total = len(records) if hasattr(records, "__len__") else None  # type: ignore[arg-type]
    for record in progress(records, total=total, desc=f"building {dataset} store", unit="rec"):
        segs, row = preprocess_one(record, record.record_id, params)
        rows.append(row)
        if segs is None:
            log.warning("skipping record %s (%s): %s", row["record_id"], row["skipped"], row["detail"])
            continue
        segments.append(segs)
        n_pending += len(segs)
        if n_pending >= chunk_segments:
            write_shard(folder, n_shards, segments, rows, params.segment_len)
            segments, rows, n_pending, n_shards = [], [], 0, n_shards + 1
    if rows:
        write_shard(folder, n_shards, segments, rows, params.segment_len)
        n_shards += 1
    return n_shards


# --------------------------------------------------------------------------------------------------
# Assembly


def _skip_error(dataset: str, params: Params, folder: Path, n_shards: int) -> DataError:
    skipped = Counter(r["skipped"] for i in range(n_shards) for r in read_shard_rows(folder, i) if "skipped" in r)
    return DataError(
        f"no record of {dataset} produced a segment of {params.segment_len} samples at {params.fs} Hz; "
        f"skipped: {dict(skipped) or 'nothing (no records)'}"
    )


def assemble(folder: Path, n_shards: int, out: Path, dataset: str, params: Params, extra_meta: dict[str, Any]) -> dict:
    """Concatenate shards ``0..n_shards-1`` of ``folder`` in order into a store in the empty folder ``out``.

    Each shard is deleted once copied (so the disk holds about one copy of the data). Returns meta.
    """
    counts = [_shard_segments(folder, i) for i in range(n_shards)]
    n_segments = sum(counts)
    if n_segments == 0:
        raise _skip_error(dataset, params, folder, n_shards)
    signals = np.lib.format.open_memmap(
        out / "signals.npy", mode="w+", dtype=np.float32, shape=(n_segments, len(LEADS), params.segment_len)
    )
    seg = n_records = 0
    skipped: Counter[str] = Counter()
    skipped_records: list[dict[str, str]] = []
    with open(out / "index.jsonl", "w") as index:
        for i in progress(range(n_shards), desc=f"writing {dataset} store", unit="shard", disable=n_shards < 8):
            npy, jsonl = shard_paths(folder, i)
            signals[seg : seg + counts[i]] = np.load(npy, mmap_mode="r")
            for row in read_shard_rows(folder, i):
                if "skipped" in row:
                    skipped[row["skipped"]] += 1
                    skipped_records.append(
                        {"record_id": row["record_id"], "key": row["key"], "reason": row["skipped"], "detail": row["detail"]}
                    )
                    continue
                n_records += 1
                for k in range(row["num_segments"]):
                    entry = {"segment_id": seg, "record_id": row["record_id"], "patient_id": row["patient_id"],
                             "segment_index": k, "report": row["report"], "labels": row["labels"],
                             "metadata": row["metadata"]}  # fmt: skip
                    index.write(json.dumps(entry) + "\n")
                    seg += 1
            jsonl.unlink()  # the completion marker first: a half-deleted shard is redone, never half-used
            npy.unlink()
    signals.flush()
    del signals
    return {
        "dataset": dataset,
        "fs": params.fs,
        "segment_len": params.segment_len,
        "leads": list(LEADS),
        "num_segments": n_segments,
        "num_records": n_records,
        "max_nan_gap_s": params.max_nan_gap_s,
        "skipped": dict(sorted(skipped.items())),
        "skipped_records": skipped_records,
        **extra_meta,
        "format_version": STORE_VERSION,
    }
