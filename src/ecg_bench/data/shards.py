"""The preprocessing work folder ``<store>.partial/`` and its shards (layout: ``ecg_bench.data.preprocess``).

A shard's two files are written under temporary names and renamed, the .jsonl last, so a shard whose .jsonl
exists is complete; the folder carries ecg-bench's marker and is kept across runs only for the same settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecg_bench import folders
from ecg_bench.data.record import LEADS
from ecg_bench.safe_files import read_json_file
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)


def _json_default(obj: Any) -> Any:
    # Readers often hand over numpy scalars (pandas rows); they are JSON numbers / lists.
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"record metadata value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def shard_paths(folder: Path, index: int) -> tuple[Path, Path]:
    """(signals .npy, rows .jsonl) of shard ``index`` in ``folder``."""
    return folder / f"shard-{index:05d}.npy", folder / f"shard-{index:05d}.jsonl"


def _write_durably(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def write_shard(folder: Path, index: int, segments: Sequence[np.ndarray], rows: Sequence[dict], segment_len: int) -> None:
    """Write a shard atomically: both files under temporary names, then renamed, the .jsonl last."""
    npy, jsonl = shard_paths(folder, index)
    arr = np.concatenate(segments) if segments else np.empty((0, len(LEADS), segment_len), np.float32)
    tag = f".tmp-{os.getpid()}"  # per process: an orphaned worker of a killed run cannot collide
    tmp_npy, tmp_jsonl = npy.with_name(npy.name + tag), jsonl.with_name(jsonl.name + tag)
    text = "".join(json.dumps(r, default=_json_default) + "\n" for r in rows)
    _write_durably(tmp_npy, lambda f: np.save(f, arr))
    _write_durably(tmp_jsonl, lambda f: f.write(text.encode()))
    os.replace(tmp_npy, npy)
    os.replace(tmp_jsonl, jsonl)


def read_shard_rows(folder: Path, index: int) -> list[dict[str, Any]]:
    """The rows of a finished shard."""
    _, jsonl = shard_paths(folder, index)
    with open(jsonl) as f:
        return [json.loads(line) for line in f if line.strip()]


def _shard_segments(folder: Path, index: int) -> int:
    npy, _ = shard_paths(folder, index)
    return int(np.load(npy, mmap_mode="r").shape[0])


def shard_is_complete(folder: Path, index: int, keys: Sequence[str], segment_len: int) -> bool:
    """True if shard ``index`` holds exactly ``keys`` and as many segments as its rows say."""
    npy, jsonl = shard_paths(folder, index)
    if not (npy.is_file() and jsonl.is_file()):
        return False
    try:
        rows = read_shard_rows(folder, index)
        arr = np.load(npy, mmap_mode="r")
        ok = [r.get("key") for r in rows] == list(keys) and arr.shape[1:] == (len(LEADS), segment_len)
        ok = ok and arr.shape[0] == sum(int(r.get("num_segments", 0)) for r in rows)
    except (OSError, ValueError) as e:
        log.warning("shard %s is damaged (%s); redoing it", jsonl, e)
        return False
    if not ok:
        log.warning("shard %s does not match its keys or segment count; redoing it", jsonl)
    return ok


def work_dir_for(out_dir: Path) -> Path:
    """The work folder of the store at ``out_dir``: ``<out_dir>.partial``."""
    return out_dir.with_name(f"{out_dir.name}.partial")


def keys_digest(keys: Sequence[str]) -> str:
    """sha256 of the key list (order matters: it fixes the shards)."""
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode())
        h.update(b"\n")
    return h.hexdigest()


def _pid_alive(name: str) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there; never clean up
        return True
    try:
        pid = int(name.rsplit("-", 1)[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: Path, pattern: str) -> None:
    """Delete ``folder/pattern`` files or folders named ``...-<pid>`` whose process is gone (a killed run's).

    Only what ecg-bench made: a folder must carry its marker, a file must lie in a folder that does.
    """
    folder_is_ours = folders.is_ours(folder)
    for p in folder.glob(pattern):
        if _pid_alive(p.name) or p.name.startswith(folders.MARKER):
            continue
        if p.is_dir() and not p.is_symlink():
            if folders.is_ours(p):
                folders.remove(p, ignore_errors=True)
            else:
                log.warning("leaving %s alone: named like a temporary of a killed build, but not made by ecg-bench", p)
        elif folder_is_ours:
            p.unlink(missing_ok=True)


def open_work_dir(work: Path, settings: dict[str, Any], resume: bool) -> None:
    """Create ``work`` for ``settings``, keeping its finished shards only if it was made with the same settings."""
    settings_file = work / "settings.json"
    folders.check_replaceable(work, "work")  # an unmarked folder of that name is never used or removed
    if work.exists() and not folders.is_empty(work):
        try:
            old = read_json_file(settings_file, "build settings (JSON object)")
        except (OSError, ValueError):
            old = None
        if not resume:
            log.info("resume=False: discarding the unfinished build in %s", work)
        elif old != settings:
            changed = sorted(k for k in settings if not isinstance(old, dict) or old.get(k) != settings[k])
            log.info("unfinished build in %s used other settings (%s); starting over", work, ", ".join(changed) or "?")
        else:
            remove_stale_temporaries(work, "*.tmp-*")
            return
        folders.remove(work, "work")
    folders.claim(work, "work")
    tmp = work / f"settings.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, settings_file)
