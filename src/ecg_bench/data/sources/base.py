"""The source registry. A source reads one base dataset (PTB-XL, MIMIC-IV-ECG, ...) as ECGRecords.

A source is a ``Source`` subclass registered by name and built from the data config::

    @SOURCES.register("mydataset")
    class MyDataset(Source):
        def keys(self) -> list[str]: ...          # cheap: every record's key, in a stable order
        def read(self, key: str) -> ECGRecord: ...  # one record; DataError (with .reason) if it is bad

Listing and reading are separate so that preprocessing can hand keys to worker processes, resume
after the keys it has finished, and skip one unreadable record without losing the others. A source
must therefore be picklable (hold paths and settings; load tables lazily) and ``read`` must not
depend on which keys were read before.

Records are yielded as read (any lead order, any sampling rate, NaNs allowed); the segment store
does the preprocessing. ``read`` raises ``DataError`` for a bad record, with a short ``reason``
attribute (``"unreadable file"``, ``"missing metadata"``, ...) that the store counts skips by.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from ecg_bench.config import DataConfig
from ecg_bench.data.record import ECGRecord
from ecg_bench.errors import DataError
from ecg_bench.registry import Registry


def data_error(reason: str, message: str) -> DataError:
    """A DataError whose ``reason`` is the category a skipped record is counted under."""
    err = DataError(message)
    err.reason = reason  # type: ignore[attr-defined]
    return err


class Source(ABC):
    """A base dataset: ``keys()`` lists the records, ``read(key)`` reads one."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def keys(self) -> list[str]:
        """Every record's key (e.g. a relative path or an id), in a stable order."""

    @abstractmethod
    def read(self, key: str) -> ECGRecord:
        """Read one record; raise DataError (with ``.reason``) when it cannot be used."""

    def settings(self) -> dict:
        """What the records depend on besides the raw files (a store built with other settings is rebuilt)."""
        return {}

    def fingerprint(self) -> dict:
        """What the records were read from, to tell whether a store built earlier is still current.

        Default: ``files_fingerprint`` of ``data_dir`` (every file's relative path, size and mtime_ns,
        hashed), or the settings when there is no data_dir. A source may narrow it to the files it reads.
        """
        data_dir = getattr(self.cfg, "data_dir", "")
        return files_fingerprint(data_dir) if data_dir else {"settings": self.settings()}

    def __iter__(self) -> Iterator[ECGRecord]:
        """Every readable record in key order (unreadable ones are logged and skipped)."""
        from ecg_bench.logging_utils import get_logger

        log = get_logger(__name__)
        for key in self.keys():
            try:
                yield self.read(key)
            except DataError as e:
                log.warning("skipping %s record %s (%s): %s", type(self).__name__, key, getattr(e, "reason", "error"), e)


def files_fingerprint(root: str | os.PathLike) -> dict:
    """``{files, bytes, newest_mtime_ns, sha256}`` over every file below ``root`` (relative path, size, mtime_ns).

    Folders reached through symbolic links are walked once each; the walk is sorted, so the digest
    does not depend on the order the file system lists entries in.
    """
    h = hashlib.sha256()
    n = total = newest = 0
    seen: set[tuple[int, int]] = set()
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a link loop, or the same folder linked twice
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            try:
                fst = os.stat(path)
            except OSError:  # a broken link: its name still counts
                fst = None
            rel = os.path.relpath(path, root)
            size, mtime = (fst.st_size, fst.st_mtime_ns) if fst else (-1, 0)
            h.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
            n, total, newest = n + 1, total + max(size, 0), max(newest, mtime)
    return {"files": n, "bytes": total, "newest_mtime_ns": newest, "sha256": h.hexdigest()}


SourceFactory = Callable[[DataConfig], Source]

SOURCES: Registry[SourceFactory] = Registry("source")

# Modules whose import registers a built-in source. Imported here so that importing this module is
# enough for ``SOURCES.get(name)`` to see every built-in name.
_BUILTIN_MODULES = (
    "ecg_bench.data.sources.synthetic",
    "ecg_bench.data.sources.ptbxl",
    "ecg_bench.data.sources.mimic_iv_ecg",
    "ecg_bench.data.sources.code15",
    "ecg_bench.data.sources.cpsc",
    "ecg_bench.data.sources.csn",
)

for _mod in _BUILTIN_MODULES:
    importlib.import_module(_mod)
