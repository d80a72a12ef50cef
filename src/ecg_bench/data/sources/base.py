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

Rules every reader follows, so that a skip means the same thing whatever the dataset:

- Sampling rate. Every dataset documents the rate its records are published at: PTB-XL 500 Hz
  (``records500``) or 100 Hz (``records100``), MIMIC-IV-ECG, CPSC 2018 and CSN 500 Hz, CODE-15%
  400 Hz. A record whose own header gives another rate is skipped as ``unexpected sampling rate``
  ("header says 250 Hz, CSN records are 500 Hz"; ``check_sampling_rate``): such a header is damaged
  or the file belongs to another dataset, and reading it anyway would silently change its time
  scale. CODE-15% has no per-record header (its HDF5 files hold samples only), so every tracing is
  read at the documented 400 Hz; synthetic records are generated at 500 Hz.
- Duplicate ids. A record whose id was already given by an earlier record of the listing is skipped
  as ``duplicate record id`` (the first one is kept): two records under one id would be merged by
  the store.
- Folders. A reader that walks folders lists each folder it cannot walk (no permission, a symbolic
  link to nothing) as a key ending in ``/``; reading that key raises ``unreadable folder`` naming the
  path, so the folder appears in the store's skip summary (counted apart from records:
  ``NOT_RECORDS``). Symbolic links to folders are followed, each real folder once (no cycles).
"""

from __future__ import annotations

from typing import Any

import hashlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from ecg_bench.config import DataConfig, SourceOptions
from ecg_bench.data.record import ECGRecord
from ecg_bench.errors import DataError
from ecg_bench.registry import Registry

UNEXPECTED_RATE = "unexpected sampling rate"
"""A record whose header gives another sampling rate than its dataset's (see the module docstring)."""
DUPLICATE_ID = "duplicate record id"
"""A record whose id an earlier record of the same listing already has."""
UNREADABLE_FOLDER = "unreadable folder"
"""A folder of the download that could not be walked (its key ends in ``/``)."""
NOT_RECORDS = frozenset({UNREADABLE_FOLDER})
"""Skip reasons that name something other than a record: the skip summary counts them apart."""


def data_error(reason: str, message: str) -> DataError:
    """A DataError whose ``reason`` is the category a skipped record is counted under."""
    err = DataError(message)
    err.reason = reason  # type: ignore[attr-defined]
    return err


def check_sampling_rate(fs: float, expected: float, dataset: str, where: str) -> None:
    """Raise ``unexpected sampling rate`` unless the header's ``fs`` is the dataset's documented ``expected`` rate.

    ``where`` names the file (or record) in the message: "<where>: header says 250 Hz, CSN records are 500 Hz".
    """
    if not math.isclose(float(fs), float(expected), rel_tol=1e-9, abs_tol=1e-9):
        raise data_error(UNEXPECTED_RATE, f"{where}: header says {float(fs):g} Hz, {dataset} records are {float(expected):g} Hz")


class Source(ABC):
    """A base dataset: ``keys()`` lists the records, ``read(key)`` reads one."""

    native_fs: float | None = None
    """Sampling rate (Hz) of the dataset's records; a data.target_fs above it is refused before any work (None = not fixed)."""

    options_type: type = SourceOptions
    """This source's options dataclass (registered with it)."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.opts = source_options(cfg, self.options_type)
        """This source's options: ``cfg.source`` when it is this source's, else the defaults (a direct call)."""

    @classmethod
    def native_rate(cls, cfg: DataConfig) -> float | None:
        """The records' sampling rate under ``cfg`` (``native_fs`` unless it depends on the config)."""
        return cls.native_fs

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


def source_options(cfg: DataConfig, cls: type) -> Any:
    """``cfg.source`` when it holds options of ``cls``, else ``cls``'s defaults (a source built directly)."""
    return cfg.source if isinstance(cfg.source, cls) else cls()


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

SOURCES: Registry[SourceFactory] = Registry("source", options=SourceOptions, package="ecg_bench.data.sources")
