"""PTB-XL (PhysioNet ``ptb-xl/1.0.3``) as ECGRecords.

Layout read from ``data.data_dir``::

    ptbxl_database.csv     ecg_id, patient_id, age, sex, report, scp_codes, strat_fold, filename_lr, filename_hr, ...
    scp_statements.csv     SCP code (first column) -> description, diagnostic_class, ...
    records500/00000/00001_hr.{hea,dat}   WFDB, 500 Hz, 10 s, 12 leads in mV   (data.source.folder=records500)
    records100/00000/00001_lr.{hea,dat}   the same at 100 Hz                   (data.source.folder=records100)

A record's key is its path relative to ``data_dir`` without extension (``records500/06000/06002_hr``).
Keys are the database rows' files plus any record found on disk that has no row (that one is skipped
as ``missing metadata``). ``record_id`` is the ecg_id (``"6002"``), ``patient_id`` the integer patient id.

``report`` is the original report text (``data.source.report_language=original``, often German) or English
(``english``): the machine translation when ``data.source.translate_model`` loads, else the English statements.
``labels`` are the English descriptions of the record's SCP codes (from scp_statements.csv, no model).

Sampling rate: 500 Hz in ``records500``, 100 Hz in ``records100`` (``FS``); a header that says
otherwise is skipped as ``unexpected sampling rate`` (the rule of ``sources.base``).
"""

from __future__ import annotations

from dataclasses import dataclass

import ast
from pathlib import Path
from typing import Any

from ecg_bench.config import DataConfig, SourceOptions, path_field
from ecg_bench.data.record import ECGRecord
from ecg_bench.data.sources.base import SOURCES, Source, check_sampling_rate, source_options
from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger
from ecg_bench.signals.io import io_error, json_value, read_csv_table, read_wfdb

log = get_logger(__name__)

MISSING_METADATA = "missing metadata"
"""A record on disk without a row in ptbxl_database.csv (or a row without patient_id)."""
BAD_METADATA = "bad metadata"
"""A database row whose scp_codes is not a dict literal of code -> likelihood."""

FS = {"records500": 500.0, "records100": 100.0}
"""Sampling rate of each PTB-XL signal folder."""
_FILENAME_COLUMN = {"records500": "filename_hr", "records100": "filename_lr"}
SEX = {0: "male", 1: "female"}
"""PTB-XL's sex coding."""
# Optional database columns copied into metadata when the row has a value (quality flags, axis, ...).
_EXTRA_COLUMNS = (
    "height",
    "weight",
    "device",
    "recording_date",
    "heart_axis",
    "infarction_stadium1",
    "infarction_stadium2",
    "validated_by_human",
    "baseline_drift",
    "static_noise",
    "burst_noise",
    "electrodes_problems",
    "extra_beats",
    "pacemaker",
)


def parse_scp_codes(text: Any, where: str) -> dict[str, float]:
    """``"{'NORM': 100.0, 'SR': 0.0}"`` -> dict, parsed with ast.literal_eval (never eval)."""
    try:
        codes = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as e:
        raise io_error(BAD_METADATA, f"{where}: scp_codes {text!r} is not a Python dict literal ({e})") from e
    if not isinstance(codes, dict) or not all(isinstance(k, str) and isinstance(v, int | float) for k, v in codes.items()):
        raise io_error(BAD_METADATA, f"{where}: scp_codes {text!r} is not a dict of code -> likelihood")
    return {k: float(v) for k, v in codes.items()}


SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
"""PTB-XL's diagnostic superclasses (scp_statements.csv ``diagnostic_class``)."""


def diagnostic_superclasses(path: str | Path) -> dict[str, str]:
    """SCP code -> diagnostic superclass (NORM, MI, STTC, CD, HYP) of the diagnostic statements (``diagnostic`` 1) of
    PTB-XL's ``scp_statements.csv`` at ``path``."""
    st = read_csv_table(path, ("diagnostic", "diagnostic_class"), index_col=0)
    out = {str(code): str(cls) for code, diag, cls in zip(st.index, st["diagnostic"], st["diagnostic_class"])
           if diag == 1 and isinstance(cls, str)}  # fmt: skip
    unknown = sorted(set(out.values()) - set(SUPERCLASSES))
    if not out or unknown:
        raise DataError(f"{path}: expected diagnostic statements with diagnostic_class in {', '.join(SUPERCLASSES)}; "
                        f"found {len(out)} statements, other classes {unknown}")  # fmt: skip
    return out


def superclasses_of(scp_codes: dict[str, float], mapping: dict[str, str]) -> list[str]:
    """The diagnostic superclasses of a record's SCP codes (any likelihood, as PTB-XL's own example code aggregates
    them); empty when it has no diagnostic statement."""
    return sorted({mapping[code] for code in scp_codes if code in mapping})


def statement_text(descriptions: list[str]) -> str:
    """``["normal ECG", "sinus rhythm"]`` -> ``"Normal ECG. Sinus rhythm."``."""
    return " ".join(d[:1].upper() + d[1:] + ("" if d.endswith(".") else ".") for d in descriptions if d)


class _Tables:
    """The two CSVs of one PTB-XL folder, indexed for read(); loaded once per process."""

    def __init__(self, cfg: DataConfig, opts: "PTBXLOptions") -> None:
        root = Path(cfg.data_dir)
        db = read_csv_table(
            root / "ptbxl_database.csv", ("ecg_id", "patient_id", "report", "scp_codes", _FILENAME_COLUMN[opts.folder])
        )
        st = read_csv_table(root / "scp_statements.csv", ("description",), index_col=0)
        self.descriptions: dict[str, str] = {str(k): str(v) for k, v in st["description"].items()}
        col = _FILENAME_COLUMN[opts.folder]
        self.rows: dict[str, dict[str, Any]] = {}
        for row in db.to_dict(orient="records"):
            if isinstance(row[col], str) and row[col].strip():
                self.rows[row[col].strip()] = row
        self.translations: dict[str, str] | None = None
        if opts.report_language == "english":
            from ecg_bench.data.translate import translate_texts

            reports = [r["report"] for r in self.rows.values() if isinstance(r["report"], str)]
            self.translations = translate_texts(reports, opts.translate_model, opts.translation_cache or None)
            if self.translations is None:
                log.info("PTB-XL reports: using the English SCP statement list as the English report")


@dataclass
class PTBXLOptions(SourceOptions):
    """PTB-XL (PhysioNet): records, reports and SCP statements."""

    folder: str = "records500"
    """Signal folder to read: records500 (500 Hz) or records100 (100 Hz)."""
    report_language: str = "original"
    """Report text: original (as recorded, often German) or english (translated with translate_model; when no model
    is given or it cannot be loaded, the English SCP statement list)."""
    translate_model: str = path_field(name_ok=True)
    """German -> English seq2seq model for the reports: a local folder or hub id (e.g. Helsinki-NLP/opus-mt-de-en);
    empty = no translation."""
    translation_cache: str = path_field()
    """JSON file caching translations by source text; empty = ~/.cache/ecg_bench/translations-<model>.json."""
    verify_checksums: bool = True
    """Skip a record whose samples differ from its header's checksums ("checksum mismatch"); false = check only
    shape and size."""

    def problems(self) -> list[str]:
        p = []
        if self.folder not in FS:
            p.append(f"folder must be 'records500' or 'records100', got {self.folder!r}")
        if self.report_language not in ("original", "english"):
            p.append(f"report_language must be 'original' or 'english', got {self.report_language!r}")
        return p


@SOURCES.register("ptbxl", options=PTBXLOptions)
class PTBXL(Source):
    """PTB-XL records from ``data.data_dir`` (see the module docstring for the layout)."""

    options_type = PTBXLOptions
    native_rate = classmethod(lambda cls, cfg: FS.get(source_options(cfg, PTBXLOptions).folder))  # records500: 500 Hz, records100: 100 Hz

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        if not cfg.data_dir:
            raise FileNotFoundError("the ptbxl source needs data.data_dir: the PTB-XL folder with ptbxl_database.csv")
        if self.opts.folder not in FS:
            raise ValueError(f"data.source.folder must be one of {sorted(FS)}, got {self.opts.folder!r}")
        self.root = Path(cfg.data_dir)
        self._tables: _Tables | None = None

    @property
    def tables(self) -> _Tables:
        if self._tables is None:
            self._tables = _Tables(self.cfg, self.opts)
        return self._tables

    def keys(self) -> list[str]:
        """Database rows' record paths plus records on disk without a row, sorted (= ecg_id order)."""
        folder = self.root / self.opts.folder
        on_disk = {p.relative_to(self.root).with_suffix("").as_posix() for p in folder.glob("*/*.hea")}
        return sorted(set(self.tables.rows) | on_disk)

    def read(self, key: str) -> ECGRecord:
        row = self.tables.rows.get(key)
        if row is None:
            raise io_error(MISSING_METADATA, f"PTB-XL record {self.root / key} has no row in ptbxl_database.csv")
        where = f"ptbxl_database.csv ecg_id {row['ecg_id']}"
        patient = json_value(row["patient_id"])
        if patient is None:
            raise io_error(MISSING_METADATA, f"{where}: no patient_id")
        codes = parse_scp_codes(row["scp_codes"], where)
        wf = read_wfdb(self.root / key, expect_leads=12, verify_checksum=self.opts.verify_checksums)
        check_sampling_rate(wf.fs, FS[self.opts.folder], f"PTB-XL {self.opts.folder}", f"{self.root / key}.hea")
        labels = [self.tables.descriptions.get(code, code) for code in codes]
        statements = statement_text(labels)
        original = row["report"] if isinstance(row["report"], str) else ""
        metadata = self._metadata(row, codes, statements)
        report = original
        if self.opts.report_language == "english":
            translated = (self.tables.translations or {}).get(original)
            report = translated if translated else statements
            if translated:
                metadata["report_original"] = original
        return ECGRecord(
            record_id=str(int(row["ecg_id"])),
            patient_id=str(int(float(patient))),
            signal=wf.signal,
            fs=wf.fs,
            leads=wf.leads,
            report=report,
            labels=labels,
            metadata=metadata,
        )

    def _metadata(self, row: dict[str, Any], codes: dict[str, float], statements: str) -> dict[str, Any]:
        sex = json_value(row.get("sex"))
        meta: dict[str, Any] = {
            "ecg_id": int(row["ecg_id"]),
            "scp_codes": codes,
            "statements": statements,
            "strat_fold": json_value(row.get("strat_fold")),
            "age": json_value(row.get("age")),
            "sex": SEX.get(int(sex)) if sex is not None else None,
        }
        for col in _EXTRA_COLUMNS:
            value = json_value(row.get(col))
            if value is not None and not (isinstance(value, str) and not value.strip()):
                meta[col] = value.strip() if isinstance(value, str) else value
        return meta

    def settings(self) -> dict:
        c = self.opts  # the keys stores have recorded since these were flat data fields
        s: dict[str, Any] = {
            "ptbxl_folder": c.folder,
            "report_language": c.report_language,
            "verify_checksums": c.verify_checksums,
        }
        if c.report_language == "english":
            s["translate_model"] = c.translate_model
        return s
