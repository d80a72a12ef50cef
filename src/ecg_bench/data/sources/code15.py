"""CODE-15% (Zenodo record 4916206, Ribeiro et al.) as ECGRecords.

Layout read from ``data.data_dir``::

    exams.csv              exam_id, age, is_male, nn_predicted_age, 1dAVb, RBBB, LBBB, SB, ST, AF, patient_id,
                           death, timey, normal_ecg, trace_file
    exams_part0.hdf5 ... exams_part17.hdf5
        tracings  float32 [N, 4096, 12]   400 Hz, leads DI, DII, DIII, AVR, AVL, AVF, V1-V6
        exam_id   int [N]                 same order as tracings

Facts from the dataset documentation (Zenodo 4916206 and github antonior92/automatic-ecg-diagnosis):

- Lead order DI, DII, DIII, AVR, AVL, AVF, V1, ..., V6 is the canonical order (only the axes differ:
  ``[samples, leads]``); the record is returned as ``[12, samples]``.
- Units: the values are millivolts. The README's "scale 1e-4V" remark contradicts its own "multiply
  by 1000 to get V"; the PhysioNet/CinC Challenge 2025 conversion of CODE-15% writes the tracings to
  WFDB with units mV at gain 1000 unchanged, and typical R waves come out at ~1 (mV).
- Exams last 10 s (4000 samples) or 7 s (2800 samples) and are zero-padded, centred, to 4096 samples:
  48 zeros on each side of a 10 s exam, 648 on each side of a 7 s one. ``strip_padding`` removes them:
  the span where any lead is non-zero is found, and if it fits inside the documented 7 s (else 10 s)
  window, exactly that window is kept (so a real sample that happens to be 0 in all leads at the edge
  is not cut); otherwise the non-zero span itself is kept.
- The last row of each file is a filler with ``exam_id`` 0 and an all-zero tracing: it is not listed.
  An exam whose tracing is all zeros is skipped as ``empty signal``.

Keys are ``"<file>:<exam_id>"`` (``"exams_part3.hdf5:1169160"``): each readable file's exams in file
order, then exams.csv rows not found in any readable file, under their ``trace_file`` (an unreadable
file's exams are skipped as ``unreadable file``, exams of a missing file as ``missing file``).

An exam_id that occurs again (later in the same file, in a later file, or in a second exams.csv row)
is listed as ``"<file>:<exam_id>@<row>"`` (``"exams.csv:<exam_id>@<line>"``) and skipped as
``duplicate record id``; the first occurrence is read (the rule of ``sources.base``).

Sampling rate: every tracing is 400 Hz (``FS``). The files hold samples only, no per-record header
that could say otherwise, so the documented rate is used as is.
``record_id`` is the exam_id, ``patient_id`` exams.csv's patient_id, ``labels`` the names of the
positive abnormality columns; there is no report text.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecg_bench.config import DataConfig
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.sources.base import DUPLICATE_ID, SOURCES, Source, data_error
from ecg_bench.errors import DataError
from ecg_bench.signals.io import MISSING_FILE, UNREADABLE_FILE, hdf5_dataset, io_error, json_value, open_hdf5, read_csv_table

FS = 400.0
"""Sampling rate of every CODE-15% tracing (Hz)."""
DURATIONS_S = (10.0, 7.0)
"""Recording lengths in the dataset; each is centred in the 4096 samples."""
LABELS = {
    "1dAVb": "1st degree AV block",
    "RBBB": "right bundle branch block",
    "LBBB": "left bundle branch block",
    "SB": "sinus bradycardia",
    "ST": "sinus tachycardia",
    "AF": "atrial fibrillation",
}
"""exams.csv abnormality columns and their names."""
MISSING_METADATA = "missing metadata"
"""An exam in an HDF5 file without a row (or patient_id) in exams.csv."""
EMPTY_SIGNAL = "empty signal"
"""An exam whose tracing is all zeros."""
_PART = re.compile(r"exams_part(\d+)\.hdf5$")


def strip_padding(tracing: np.ndarray) -> tuple[np.ndarray, int]:
    """``[4096, 12]`` zero-padded tracing -> (``[samples, 12]`` recording, index of its first sample).

    See the module docstring; an all-zero tracing returns an empty array.
    """
    nonzero = np.flatnonzero(np.any(tracing != 0, axis=1))
    if nonzero.size == 0:
        return tracing[:0], 0
    first, last = int(nonzero[0]), int(nonzero[-1]) + 1
    n = tracing.shape[0]
    for seconds in sorted(DURATIONS_S):  # the narrowest documented window that holds the span
        length = int(round(seconds * FS))
        start = (n - length) // 2
        if 0 <= start <= first and last <= start + length:
            return tracing[start : start + length], start
    return tracing[first:last], first


def _truthy(value: Any) -> bool:
    v = json_value(value)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v) if v is not None else False


def _part_order(path: Path) -> tuple[int, str]:
    m = _PART.search(path.name)
    return (int(m.group(1)) if m else 1 << 30, path.name)


@SOURCES.register("code15")
class CODE15(Source):
    """CODE-15% exams from ``data.data_dir`` (see the module docstring for layout, units and padding)."""

    native_fs = FS

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        if not cfg.data_dir:
            raise FileNotFoundError("the code15 source needs data.data_dir: the folder with exams.csv and exams_part*.hdf5")
        self.root = Path(cfg.data_dir)
        self._exams: pd.DataFrame | None = None
        self._ids: dict[str, dict[int, int]] = {}  # file name -> exam_id -> row of its first occurrence
        self._dups: dict[str, list[tuple[int, int]]] = {}  # file name -> (exam_id, row) of later occurrences
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    # HDF5 handles cannot be pickled (nor shared across a fork): workers reopen the files and reload exams.csv.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}, "_exams": None}

    @property
    def exams(self) -> pd.DataFrame:
        """exams.csv indexed by exam_id (columnar: a full release has 345,779 rows, reloaded by every worker)."""
        if self._exams is None:
            df = read_csv_table(self.root / "exams.csv", ("exam_id", "patient_id"))
            df = df.assign(_line=np.arange(len(df)) + 2)  # line in exams.csv (after the header), for messages
            df = df[df["exam_id"].notna()]
            self._exams = df.set_index(df["exam_id"].astype("int64"), drop=False)
        return self._exams

    def _exam(self, exam_id: int) -> dict[str, Any] | None:
        exams = self.exams
        if exam_id not in exams.index:
            return None
        row = exams.loc[exam_id]
        return (row.iloc[0] if isinstance(row, pd.DataFrame) else row).to_dict()

    def _exam_rows(self, name: str) -> dict[int, int]:
        """exam_id -> row of one HDF5 file (read once per process); DataError if the file is unusable."""
        if name not in self._ids:
            with open_hdf5(self.root / name) as f:
                ids = np.asarray(hdf5_dataset(f, "exam_id", 1)[:], dtype=np.int64)
                tracings = hdf5_dataset(f, "tracings", 3, (12,))
                if tracings.shape[0] != ids.shape[0]:
                    raise io_error(UNREADABLE_FILE, f"{f.filename}: {tracings.shape[0]} tracings but {ids.shape[0]} exam ids")
            first: dict[int, int] = {}
            dups: list[tuple[int, int]] = []
            for i, e in enumerate(ids.tolist()):
                if e == 0:
                    continue
                if e in first:
                    dups.append((e, i))
                else:
                    first[e] = i
            self._ids[name], self._dups[name] = first, dups
        return self._ids[name]

    def _files(self) -> list[Path]:
        return sorted(self.root.glob("exams_part*.hdf5"), key=_part_order)

    def keys(self) -> list[str]:
        """Each readable file's exams in file order, then exams.csv rows found in no readable file."""
        keys: list[str] = []
        found: set[int] = set()
        for path in self._files():
            try:
                rows = self._exam_rows(path.name)
            except DataError:
                continue  # its exams are listed below from exams.csv and skipped as unreadable
            later = [(e, i) for e, i in rows.items() if e in found] + self._dups[path.name]
            keys.extend(f"{path.name}:{e}" for e in rows if e not in found)
            keys.extend(f"{path.name}:{e}@{i}" for e, i in sorted(later, key=lambda t: t[1]))  # skipped as duplicates
            found.update(rows)
        exams = self.exams
        repeated = exams.index.duplicated(keep="first")
        files = exams["trace_file"] if "trace_file" in exams.columns else pd.Series(None, index=exams.index, dtype=object)
        rows_once = zip(exams.index[~repeated].tolist(), files[~repeated].map(json_value).tolist())
        for exam_id, trace_file in sorted(rows_once, key=lambda t: t[0]):
            if exam_id not in found:
                keys.append(f"{str(trace_file).strip() if trace_file else '?'}:{exam_id}")
        keys.extend(f"exams.csv:{e}@{line}" for e, line in zip(exams.index[repeated].tolist(), exams["_line"][repeated].tolist()))
        return keys

    def _duplicate(self, name: str, exam_id: int, row: int) -> DataError:
        """The ``duplicate record id`` error of the occurrence of ``exam_id`` at ``row`` of ``name``."""
        if name == "exams.csv":
            lines = self.exams["_line"][self.exams.index == exam_id].tolist()
            first = f"line {lines[0]} of exams.csv" if lines else "an earlier line of exams.csv"
            msg = f"CODE-15% exam {exam_id}: line {row} of exams.csv repeats the exam_id of {first}; only the first is used"
            return data_error(DUPLICATE_ID, msg)
        first = "an earlier exam"
        for path in self._files():
            try:
                rows = self._exam_rows(path.name)
            except DataError:
                continue
            if exam_id in rows and (path.name, rows[exam_id]) != (name, row):
                first = f"row {rows[exam_id]} of {path.name}"
                break
        msg = f"CODE-15% exam {exam_id}: row {row} of {name} repeats the exam_id of {first}; only the first is read"
        return data_error(DUPLICATE_ID, msg)

    def _handle(self, name: str) -> Any:
        if self._pid != os.getpid():  # forked: never use the parent's handles
            self._handles, self._pid = {}, os.getpid()
        if name not in self._handles:
            self._handles[name] = open_hdf5(self.root / name)
        return self._handles[name]

    def _tracing(self, name: str, exam_id: int) -> np.ndarray:
        if name == "?" or not (self.root / name).is_file():
            raise io_error(
                MISSING_FILE, f"CODE-15% exam {exam_id}: its file {name!r} (exams.csv trace_file) is not in {self.root}"
            )
        rows = self._exam_rows(name)
        if exam_id not in rows:
            raise io_error(MISSING_FILE, f"CODE-15% exam {exam_id} is listed in exams.csv under {name} but is not in that file")
        try:
            tracing = np.asarray(hdf5_dataset(self._handle(name), "tracings", 3, (12,))[rows[exam_id]], dtype=np.float32)
        except (OSError, RuntimeError) as e:
            raise io_error(UNREADABLE_FILE, f"{self.root / name}: cannot read the tracing of exam {exam_id}: {e}") from e
        return tracing

    def read(self, key: str) -> ECGRecord:
        name, _, eid = key.rpartition(":")
        eid, _, row = eid.partition("@")
        if not name or not eid.lstrip("-").isdigit() or (row and not row.isdigit()):
            raise io_error(MISSING_METADATA, f"CODE-15% key {key!r}: expected '<file>:<exam_id>'")
        exam_id = int(eid)
        if row:
            raise self._duplicate(name, exam_id, int(row))
        tracing = self._tracing(name, exam_id)
        row = self._exam(exam_id)
        if row is None or json_value(row.get("patient_id")) is None:
            raise io_error(MISSING_METADATA, f"CODE-15% exam {exam_id} in {name} has no row with a patient_id in exams.csv")
        signal, start = strip_padding(tracing)
        if signal.shape[0] == 0:
            raise io_error(EMPTY_SIGNAL, f"CODE-15% exam {exam_id} in {name}: the tracing is all zeros")
        labels = [label for col, label in LABELS.items() if col in row and _truthy(row[col])]
        return ECGRecord(
            record_id=str(exam_id),
            patient_id=str(int(float(row["patient_id"]))),
            signal=np.ascontiguousarray(signal.T),
            fs=FS,
            leads=LEADS,
            report="",
            labels=labels,
            metadata=self._metadata(row, name, signal.shape[0], start),
        )

    @staticmethod
    def _metadata(row: dict[str, Any], name: str, n: int, start: int) -> dict[str, Any]:
        male = json_value(row.get("is_male"))
        meta: dict[str, Any] = {
            "exam_id": int(row["exam_id"]),
            "age": json_value(row.get("age")),
            "sex": None if male is None else ("male" if _truthy(male) else "female"),
            "abnormalities": {col: _truthy(row[col]) for col in LABELS if col in row},
            "file": name,
            "duration_s": n / FS,
            "padding_start": start,
        }
        for col in ("nn_predicted_age", "normal_ecg", "death", "timey"):
            value = json_value(row.get(col))
            if value is not None:
                meta[col] = value
        return meta
