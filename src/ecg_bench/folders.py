"""Folders ecg-bench makes carry a marker file; only such folders are ever removed or replaced.

Every folder the tool creates for its own output (a segment store, a store's ``.partial`` work
folder, a run or evaluation folder, a checkpoint, a Hugging Face export, the temporaries of each)
gets ``.ecg-bench.json``::

    {"made_by": "ecg-bench", "kind": "store", "created": "2025-01-01T12:00:00+00:00", "version": "0.1.0"}

- ``claim(path, kind)``: make ``path`` ours to write into: created if missing, marked if empty,
  accepted if it already carries our marker of the same kind; anything else is refused.
- ``make_temp(dst, kind)`` + ``replace(tmp, dst, kind)``: build beside ``dst`` and swap it in
  atomically, only if ``dst`` is missing, empty, or ours of the same kind.
- ``remove(path)``: refuses a folder without our marker. No option bypasses this.

A folder that is not empty and has no marker (a dataset download, a home folder, a folder of another
tool) is refused with a ``FolderError`` naming it; nothing in it is touched.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ecg_bench.errors import DataError
from ecg_bench.limits import load_json_file

MARKER = ".ecg-bench.json"
KINDS = ("store", "work", "run", "eval", "checkpoint", "hf_export", "report", "sweep")
_WHAT = {"store": "a segment store", "work": "an unfinished store build", "run": "a run folder",
         "eval": "an evaluation folder", "checkpoint": "a checkpoint", "hf_export": "a Hugging Face export",
         "report": "a benchmark report", "sweep": "a benchmark sweep"}  # fmt: skip


class FolderError(DataError):
    """A folder the tool may not write into, replace or remove (not made by ecg-bench, or of another kind)."""


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The marker of ``path`` if it is a folder ecg-bench made, else None."""
    f = Path(path) / MARKER
    try:
        m = load_json_file(f, "folder marker", max_bytes=1024 * 1024)
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("made_by") == "ecg-bench" else None


def is_ours(path: str | Path, kind: str | None = None) -> bool:
    """True if ``path`` is a folder (not a link) ecg-bench made, of ``kind`` when given."""
    p = Path(path)
    m = read_marker(p) if p.is_dir() and not p.is_symlink() else None
    return m is not None and (kind is None or m.get("kind") == kind)


def is_empty(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and not p.is_symlink() and next(p.iterdir(), None) is None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}; valid: {', '.join(KINDS)}")


def _write_marker(path: Path, kind: str) -> None:
    from ecg_bench._version import __version__

    m = {"made_by": "ecg-bench", "kind": kind, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
         "version": __version__}  # fmt: skip
    tmp = path / f"{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(m, indent=2) + "\n")
    os.replace(tmp, path / MARKER)


def _refusal(path: Path, kind: str) -> FolderError:
    if path.is_symlink():
        return FolderError(f"{path} is a symbolic link; ecg-bench writes {_WHAT[kind]} only into a real folder it made")
    if path.exists() and not path.is_dir():
        return FolderError(f"{path} is a file, not a folder; expected a new or empty folder for {_WHAT[kind]}")
    m = read_marker(path)
    if m is not None:
        return FolderError(
            f"{path} was made by ecg-bench as {_WHAT.get(m.get('kind'), m.get('kind'))}, not {_WHAT[kind]}; choose another folder"
        )
    return FolderError(
        f"{path} is not empty and was not made by ecg-bench (no {MARKER} in it): it is left untouched; "
        f"choose a new or empty folder for {_WHAT[kind]}"
    )


def check_replaceable(path: str | Path, kind: str) -> Path:
    """Raise FolderError unless ``path`` is missing, an empty folder, or ours of ``kind``."""
    _check_kind(kind)
    p = Path(path)
    if not (p.exists() or p.is_symlink()) or is_empty(p) or is_ours(p, kind):
        return p
    raise _refusal(p, kind)


def claim(path: str | Path, kind: str) -> Path:
    """Make ``path`` a folder of ``kind`` to write into (see the module docstring); return it."""
    p = check_replaceable(path, kind)
    if not is_ours(p, kind):
        p.mkdir(parents=True, exist_ok=True)
        _write_marker(p, kind)
    return p


def make_temp(dst: str | Path, kind: str) -> Path:
    """A new, marked folder ``<dst>.tmp-<pid>`` beside ``dst`` to build into (a leftover of ours is removed)."""
    _check_kind(kind)
    dst = Path(dst)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    if tmp.exists() or tmp.is_symlink():
        remove(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    _write_marker(tmp, kind)
    return tmp


def replace(tmp: str | Path, dst: str | Path, kind: str) -> Path:
    """Move the finished folder ``tmp`` (ours) onto ``dst``, which must be missing, empty, or ours of ``kind``.

    An existing ``dst`` is renamed aside (``<dst>.old-<pid>``) and removed once ``tmp`` is in place,
    so ``dst`` is at every moment either the old folder or the new one.
    """
    tmp, dst = Path(tmp), Path(dst)
    if not is_ours(tmp, kind):
        raise FolderError(f"{tmp} is not a {kind} folder made by ecg-bench; refusing to move it onto {dst}")
    check_replaceable(dst, kind)
    old = None
    if is_empty(dst):
        dst.rmdir()
    elif dst.exists():
        old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
        if old.exists() or old.is_symlink():
            remove(old)
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old is not None:
        remove(old, ignore_errors=True)
    return dst


def remove(path: str | Path, kind: str | None = None, *, ignore_errors: bool = False) -> None:
    """Delete the folder ``path`` if ecg-bench made it (of ``kind`` when given); FolderError otherwise.

    A missing ``path`` is fine. The marker goes last, so a removal cut short can be finished later.
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return
    if not is_ours(p, kind):
        m = None if p.is_symlink() else read_marker(p)
        if m is not None:
            raise FolderError(f"{p} was made by ecg-bench as {_WHAT.get(m.get('kind'), m.get('kind'))}, not "
                              f"{_WHAT[kind]}: refusing to delete it")  # type: ignore[index]  # fmt: skip
        raise FolderError(f"{p} was not made by ecg-bench (no {MARKER} in it, or a link): refusing to delete it")
    for child in p.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=ignore_errors)
        else:
            try:
                child.unlink()
            except OSError:
                if not ignore_errors:
                    raise
    try:
        (p / MARKER).unlink(missing_ok=True)
        p.rmdir()
    except OSError:
        if not ignore_errors:
            raise


def check_apart(path: str | Path, other: str | Path, what: str, other_what: str) -> None:
    """FolderError if ``path`` is ``other``, inside it, or contains it (e.g. a store and a dataset download)."""
    if not str(path) or not str(other):
        return
    a, b = Path(path).expanduser().resolve(), Path(other).expanduser().resolve()
    if a == b:
        raise FolderError(f"{what} {path} is the same folder as {other_what} {other}; choose another folder for {what}")
    if b in a.parents:
        raise FolderError(f"{what} {path} is inside {other_what} {other}; choose a folder outside it")
    if a in b.parents:
        raise FolderError(f"{what} {path} contains {other_what} {other}; choose a folder that does not")
