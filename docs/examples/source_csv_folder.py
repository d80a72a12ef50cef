"""A base dataset: one CSV file per ECG record (``<patient>_<record>.csv``, a header row of lead names, values in mV),
with its report, if any, in ``<patient>_<record>.txt`` beside it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_bench.config import SourceOptions
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.sources.base import SOURCES, Source, data_error, source_options
from ecg_bench.errors import DataError
from ecg_bench.limits import read_bytes_capped


@dataclass
class CsvFolderOptions(SourceOptions):
    """ECGs as CSV files in data_dir: one per record, named <patient>_<record>.csv, lead names in the header, mV;
    the report in <patient>_<record>.txt."""

    fs: float = 500.0
    """Sampling rate of every file (Hz)."""
    max_mb: float = 64.0
    """Largest file read (MB); a larger one is skipped as 'too large'."""

    def problems(self) -> list[str]:
        return [f"fs must be > 0, got {self.fs}"] if not self.fs > 0 else []


@SOURCES.register("csv_folder", options=CsvFolderOptions)
class CsvFolder(Source):
    options_type = CsvFolderOptions

    @classmethod
    def native_rate(cls, cfg) -> float:  # the rate is an option, so a data.target_fs above it is refused
        return source_options(cfg, CsvFolderOptions).fs

    def keys(self) -> list[str]:
        return sorted(p.name for p in Path(self.cfg.data_dir).glob("*.csv"))

    def read(self, key: str) -> ECGRecord:
        path = Path(self.cfg.data_dir) / key
        try:
            text = read_bytes_capped(path, int(self.opts.max_mb * 2**20), "CSV ECG").decode("utf-8")
        except DataError as e:
            raise data_error("too large", str(e)) from None
        except (OSError, UnicodeDecodeError) as e:
            raise data_error("unreadable file", f"{path}: {e}") from None
        leads = tuple(text.split("\n", 1)[0].strip().split(","))
        if sorted(leads) != sorted(LEADS):
            raise data_error("wrong leads", f"{path}: header names {leads}; expected the 12 leads {LEADS}")
        try:
            signal = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2, dtype=np.float32).T
        except ValueError as e:
            raise data_error("unreadable file", f"{path}: {e}") from None
        report_file = path.with_suffix(".txt")
        report = read_bytes_capped(report_file, 2**20, "report").decode("utf-8", "replace") if report_file.is_file() else ""
        patient, _, record = path.stem.partition("_")
        return ECGRecord(record_id=path.stem, patient_id=patient, signal=signal, fs=self.opts.fs, leads=leads,
                         report=report.strip())
