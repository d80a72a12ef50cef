"""MIMIC-IV-ECG (PhysioNet ``mimic-iv-ecg/1.0``) as ECGRecords.

Layout read from ``data.data_dir``::

    record_list.csv            subject_id, study_id, file_name, ecg_time, path (files/p1000/p10000032/s40689238/40689238)
    machine_measurements.csv   subject_id, study_id, cart_id, ecg_time, report_0 ... report_17, bandwidth, filtering,
                               rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end, p_axis, qrs_axis, t_axis
    files/pNNNN/pNNNNNNNN/sNNNNNNNN/NNNNNNNN.{hea,dat}   WFDB, 500 Hz, 10 s, 12 leads in mV

A record's key is its ``path`` from record_list.csv (the listing of the release; the files tree is
not walked, it holds ~800,000 records). ``record_id`` is the study_id, ``patient_id`` the subject_id.
``report`` is the machine report: the non-empty ``report_i`` lines joined by a single space, as the
original ECG-Bench joins them; the lines are also kept in ``metadata["report_lines"]``. A study with
no machine_measurements row is skipped as ``missing metadata`` (the original's inner join drops it).

MIMIC-IV-ECG stores the leads as I, II, III, aVR, aVF, aVL, V1-V6: the record keeps the header's
names and order, and the segment store reorders them to the canonical order. Every record is
500 Hz (``FS``); a header that says otherwise is skipped as ``unexpected sampling rate`` (the rule
of ``sources.base``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecg_bench.config import DataConfig, SourceOptions
from ecg_bench.data.record import ECGRecord
from ecg_bench.data.sources.base import SOURCES, Source, check_sampling_rate
from ecg_bench.signals.io import io_error, json_value, read_csv_table, read_wfdb

FS = 500.0
"""Sampling rate of every MIMIC-IV-ECG record (Hz); a header that says otherwise is skipped (``unexpected sampling rate``)."""
MISSING_METADATA = "missing metadata"
"""A record_list.csv study without a machine_measurements.csv row."""
REPORT_COLUMNS = tuple(f"report_{i}" for i in range(18))
"""The machine report lines of machine_measurements.csv."""
_ID_COLUMNS = ("subject_id", "study_id", "ecg_time")
REPORT_SEPARATOR = " "
"""Joins the report lines (the original ECG-Bench's choice)."""


def join_report(lines: list[Any]) -> tuple[str, list[str]]:
    """The non-empty report lines (stripped) and their joined text."""
    kept = [str(v).strip() for v in lines if json_value(v) is not None and str(v).strip()]
    return REPORT_SEPARATOR.join(kept), kept


class _Tables:
    """record_list.csv and machine_measurements.csv, columnar (a full release has ~800,000 studies: one
    dict per row would cost gigabytes in every worker). Report lines are categoricals: they repeat a lot."""

    def __init__(self, root: Path) -> None:
        rl = read_csv_table(
            root / "record_list.csv",
            ("subject_id", "study_id", "path"),
            usecols=lambda c: c in ("subject_id", "study_id", "ecg_time", "path"),
        )
        rl["path"] = rl["path"].astype(str).str.strip()
        self.record_list = rl.reset_index(drop=True)
        self.by_path = pd.Index(self.record_list["path"])
        # subject_id and ecg_time come from record_list.csv; text columns repeat a lot and are stored as categoricals.
        mm = read_csv_table(
            root / "machine_measurements.csv",
            ("study_id",),
            usecols=lambda c: c not in ("subject_id", "ecg_time"),
            low_memory=False,
        )
        for col in mm.columns:
            if mm[col].dtype == object:
                mm[col] = mm[col].astype("category")
        self.measures = mm[mm["study_id"].notna()].reset_index(drop=True)
        self.by_study = pd.Index(self.measures["study_id"].astype("int64"))
        self.report_columns = [c for c in REPORT_COLUMNS if c in self.measures.columns]
        self.measure_columns = [c for c in self.measures.columns if c not in REPORT_COLUMNS and c not in _ID_COLUMNS]

    def row(self, index: pd.Index, frame: pd.DataFrame, value: Any) -> dict[str, Any] | None:
        """The first row of ``frame`` whose ``index`` entry is ``value``, as a dict (None if there is none)."""
        pos = index.get_indexer([value])[0] if index.is_unique else next(iter(np.flatnonzero(index == value)), -1)
        return None if pos < 0 else frame.iloc[int(pos)].to_dict()


@dataclass
class MIMICIVECGOptions(SourceOptions):
    """MIMIC-IV-ECG (PhysioNet): WFDB records with machine measurements and reports."""

    verify_checksums: bool = True
    """Skip a record whose samples differ from its header's checksums ("checksum mismatch"); false = check only
    shape and size."""


@SOURCES.register("mimic_iv_ecg", options=MIMICIVECGOptions)
class MIMICIVECG(Source):
    """MIMIC-IV-ECG records from ``data.data_dir`` (see the module docstring for the layout)."""

    options_type = MIMICIVECGOptions

    native_fs = FS

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        if not cfg.data_dir:
            raise FileNotFoundError("the mimic_iv_ecg source needs data.data_dir: the folder with record_list.csv and files/")
        self.root = Path(cfg.data_dir)
        self._tables: _Tables | None = None

    @property
    def tables(self) -> _Tables:
        if self._tables is None:
            self._tables = _Tables(self.root)
        return self._tables

    def keys(self) -> list[str]:
        """record_list.csv's ``path`` column, in the file's order."""
        return self.tables.record_list["path"].tolist()

    def settings(self) -> dict:
        return {"verify_checksums": self.opts.verify_checksums}

    # The tables are reloaded by each worker process rather than pickled into it.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tables": None}

    def read(self, key: str) -> ECGRecord:
        t = self.tables
        rec = t.row(t.by_path, t.record_list, key)
        if rec is None:
            raise io_error(MISSING_METADATA, f"MIMIC-IV-ECG record {key!r} is not in record_list.csv")
        study, subject = json_value(rec.get("study_id")), json_value(rec.get("subject_id"))
        if study is None or subject is None:
            raise io_error(MISSING_METADATA, f"record_list.csv row {key!r}: no study_id or subject_id")
        measures = t.row(t.by_study, t.measures, int(study))
        if measures is None:
            raise io_error(MISSING_METADATA, f"MIMIC-IV-ECG study {study} ({key}) has no row in machine_measurements.csv")
        wf = read_wfdb(self.root / key, expect_leads=12, verify_checksum=self.opts.verify_checksums)
        check_sampling_rate(wf.fs, FS, "MIMIC-IV-ECG", f"{self.root / key}.hea")
        report, lines = join_report([measures[c] for c in t.report_columns])
        meta: dict[str, Any] = {
            "subject_id": int(subject),
            "study_id": int(study),
            "ecg_time": json_value(rec.get("ecg_time")),
            "report_lines": lines,
        }
        for col in t.measure_columns:
            v = json_value(measures[col])
            if v is not None:
                meta[col] = v
        return ECGRecord(
            record_id=str(int(study)),
            patient_id=str(int(subject)),
            signal=wf.signal,
            fs=wf.fs,
            leads=wf.leads,
            report=report,
            labels=[],
            metadata=meta,
        )
