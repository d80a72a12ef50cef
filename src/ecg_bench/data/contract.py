"""The preprocessing contract: how a raw ECG became the segments a model was trained on, saved with the model.

A checkpoint carries it as ``preprocessing.json`` (written at save time from the run config), so a model can
be used on a new ECG file without the segment store it was trained from: ``prepare(record)`` runs the SAME
function the store runs on every record (``data.preprocess.preprocess_record``: canonical lead order, the
missing-data policy, polyphase resampling to ``fs``, non-overlapping ``segment_len`` windows), and the model's
representation then makes model input of each segment, as in training.

``preprocessing.json``::

    {"version": 1, "fs": 250.0, "segment_len": 500, "segment_seconds": 2.0,
     "leads": ["I", "II", ..., "V6"], "units": "mV", "max_nan_gap_s": 1.0, "flat_lead_std_mv": 1e-06,
     "resample": "...", "filters": [], "segmenting": "...", "representation": "signal",
     "representation_options": {"clip": 5.0}}

``filters`` is empty: the store applies no band-pass or notch filter (the representation removes each lead's
mean). A checkpoint written before the contract existed has none; ``from_run_config`` derives it from the
run config it carries (``data.target_fs``, ``data.segment_seconds``, ``model.representation``: its ``type`` and
options).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_bench.config import RepresentationOptions, RunConfig, choice, to_dict
from ecg_bench.data.preprocess import DEFAULT_MAX_NAN_GAP_S, preprocess_record
from ecg_bench.data.record import ECGRecord
from ecg_bench.errors import DataError
from ecg_bench.limits import hint, limit
from ecg_bench.signals.leads import LEADS
from ecg_bench.signals.processing import FLAT_STD_MV

CONTRACT_FILE = "preprocessing.json"
CONTRACT_VERSION = 1
RESAMPLE = "polyphase (scipy.signal.resample_poly, padtype='line'), ratio as a fraction with denominator <= 1000"
SEGMENTING = "non-overlapping windows from the record's first sample; a tail shorter than one segment is dropped"


@dataclass(frozen=True)
class PreprocessingContract:
    """What every ECG goes through before the model sees it (the store's preprocessing), as saved with a model."""

    fs: float
    """Sampling rate (Hz) every record is resampled to."""
    segment_len: int
    """Samples per segment (the model's input length)."""
    leads: tuple[str, ...] = LEADS
    """Lead order of a segment's rows; a record's leads are matched to these by name (case-insensitive)."""
    units: str = "mV"
    """Physical unit of the samples (readers convert uV and V)."""
    max_nan_gap_s: float = DEFAULT_MAX_NAN_GAP_S
    """NaN gaps up to this long (s) are linearly interpolated; a longer gap or an all-NaN lead refuses the record."""
    flat_lead_std_mv: float = FLAT_STD_MV
    """A lead whose standard deviation over the record is below this (mV) is flat: the record is refused."""
    resample: str = RESAMPLE
    """How the record is resampled to ``fs``."""
    filters: tuple[str, ...] = ()
    """Filters applied before segmenting (none: the representation removes each lead's mean)."""
    segmenting: str = SEGMENTING
    """How a record is cut into segments."""
    representation: str = "signal"
    """How a segment becomes model input: the ``type`` of ``model.representation`` (a name from the representation
    registry)."""
    representation_options: dict[str, Any] = field(default_factory=dict)
    """The representation's options (``model.representation`` without ``type``; empty = its defaults)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything a newer version wrote that this one does not know (kept, not used)."""

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.fs, int | float) and math.isfinite(self.fs) and self.fs > 0):
            problems.append(f"fs must be a positive number of Hz, got {self.fs!r}")
        if isinstance(self.segment_len, bool) or not isinstance(self.segment_len, int) or self.segment_len < 1:
            problems.append(f"segment_len must be a whole number of samples >= 1, got {self.segment_len!r}")
        if list(self.leads) != list(LEADS):
            problems.append(f"leads must be the 12 standard leads {list(LEADS)}, got {list(self.leads)!r}")
        if self.units != "mV":
            problems.append(f"units must be 'mV', got {self.units!r}")
        if not isinstance(self.representation, str) or not self.representation:
            problems.append(f"representation must be a representation name, got {self.representation!r}")
        if not isinstance(self.representation_options, dict):
            problems.append(f"representation_options must be a JSON object, got {self.representation_options!r}")
        for name in ("max_nan_gap_s", "flat_lead_std_mv"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v >= 0):
                problems.append(f"{name} must be a number >= 0, got {v!r}")
        if self.filters:  # the store applies none, so a model trained on filtered input would be fed unfiltered input
            problems.append(f"filters {list(self.filters)!r} are declared, but the preprocessing applies no filter (expected [])")
        if isinstance(self.segment_len, int) and isinstance(self.fs, int | float) and not problems:
            if self.segment_len * len(LEADS) > limit("MAX_RECORD_VALUES"):
                problems.append(f"segment_len {self.segment_len:,} is longer than a record may be ({hint('MAX_RECORD_VALUES')})")
            if self.fs > limit("MAX_SAMPLING_RATE"):
                problems.append(f"fs {self.fs:g} Hz is above {limit('MAX_SAMPLING_RATE'):g} Hz ({hint('MAX_SAMPLING_RATE')})")
        if problems:
            raise DataError("invalid preprocessing contract: " + "; ".join(problems))

    @property
    def segment_seconds(self) -> float:
        return self.segment_len / self.fs

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        d = {"version": CONTRACT_VERSION, **asdict(self), "segment_seconds": self.segment_seconds}
        d["leads"], d["filters"] = list(self.leads), list(self.filters)
        d["representation_options"] = dict(self.representation_options)
        extra = d.pop("extra")
        return {**extra, **d}

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / CONTRACT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, d: Any, where: str = CONTRACT_FILE) -> "PreprocessingContract":
        """The contract in ``d`` (as ``to_dict`` wrote it); DataError naming ``where`` and what is missing or wrong."""
        if not isinstance(d, dict):
            raise DataError(f"{where}: expected a JSON object (the preprocessing contract), got {type(d).__name__}")
        missing = [k for k in ("fs", "segment_len") if k not in d]
        if missing:
            raise DataError(f"{where}: the preprocessing contract lacks {missing}; expected at least fs (Hz) and segment_len")
        known = {"fs", "segment_len", "leads", "units", "max_nan_gap_s", "flat_lead_std_mv", "resample", "filters",
                 "segmenting", "representation", "representation_options"}  # fmt: skip
        kwargs = {k: d[k] for k in known if k in d}
        if isinstance(kwargs.get("representation"), dict):  # {type: NAME, option: value} written out whole
            opts = dict(kwargs["representation"])
            kwargs["representation"] = opts.pop("type", None)
            kwargs.setdefault("representation_options", opts)
        for k in ("leads", "filters"):
            if k in kwargs:
                if not isinstance(kwargs[k], list) or not all(isinstance(x, str) for x in kwargs[k]):
                    raise DataError(f"{where}: {k} must be a list of strings, got {kwargs[k]!r}")
                kwargs[k] = tuple(kwargs[k])
        extra = {k: v for k, v in d.items() if k not in known and k not in ("version", "segment_seconds")}
        try:
            return cls(**kwargs, extra=extra)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        except TypeError as e:
            raise DataError(f"{where}: not a preprocessing contract ({e})") from None

    @classmethod
    def read(cls, folder: str | Path) -> "PreprocessingContract":
        from ecg_bench.safe_files import read_json_file

        path = Path(folder) / CONTRACT_FILE
        return cls.from_dict(read_json_file(path, "preprocessing contract (JSON object)"), str(path))

    @classmethod
    def from_run_config(cls, cfg: RunConfig) -> "PreprocessingContract":
        """The contract of a run: the store it builds (``data.target_fs``, ``data.segment_seconds``) and its
        representation (type and options); the missing-data policy is the store's default (``build_store`` is called
        without one)."""
        seg_len = int(round(cfg.data.segment_seconds * cfg.data.target_fs))
        rep = to_dict(cfg.model.representation)
        kind = rep.pop("type")
        return cls(fs=float(cfg.data.target_fs), segment_len=seg_len, representation=kind, representation_options=rep)

    def representation_config(self) -> RepresentationOptions:
        """The representation options this contract names (``model.representation`` of the run that wrote it)."""
        try:
            return choice(RepresentationOptions, self.representation, **self.representation_options)
        except TypeError as e:  # an option this version's representation does not have
            raise DataError(f"{CONTRACT_FILE}: representation {self.representation!r} options "
                            f"{self.representation_options} do not fit it ({e})") from None  # fmt: skip

    # ------------------------------------------------------------------ use
    def prepare(self, record: ECGRecord, where: str = "") -> np.ndarray:
        """``record`` -> float32 ``[n, 12, segment_len]`` segments, by the store's own function; DataError when the
        store would skip the record (missing lead, flat lead, long NaN gap, shorter than one segment)."""
        where = where or f"record {record.record_id}"
        try:
            segs, reason = preprocess_record(record, self.fs, self.segment_len, self.max_nan_gap_s)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        if segs is None:
            raise DataError(f"{where}: {reason} (the model's preprocessing refuses it, as its segment store would)")
        return segs.astype(np.float32, copy=False)


ELM_MANIFEST_FILE = "elm.json"
"""The ELM manifest a checkpoint carries beside its contract (family, input dimensions, vocabulary)."""


def check_checkpoint_contract(folder: str | Path, cfg: RunConfig | None = None) -> PreprocessingContract:
    """The preprocessing contract of checkpoint ``folder``, checked against the checkpoint's other files.

    ``preprocessing.json`` must agree with the run config (``cfg``, default the folder's ``config.json``) on the
    sampling rate, the segment length and the representation, and ``elm.json`` must be present with the same
    sampling rate as its input: a hand edit of one file (fs and segment length changed in preprocessing.json and
    elm.json but not in config.json) or a deleted manifest would otherwise load a model fed other input than it was
    trained on. DataError listing every disagreement, naming the files."""
    from ecg_bench.safe_files import read_json_file

    folder = Path(folder)
    contract = PreprocessingContract.read(folder)
    cfg = cfg if cfg is not None else RunConfig.load(folder / "config.json")
    problems = []
    try:
        expected = PreprocessingContract.from_run_config(cfg)
    except DataError as e:
        expected = None
        problems.append(f"config.json: {e}")
    if expected is not None:
        for name in ("fs", "segment_len", "representation"):
            mine, theirs = getattr(contract, name), getattr(expected, name)
            if mine != theirs:
                problems.append(f"{CONTRACT_FILE} says {name} {mine!r}, config.json gives {theirs!r}")
    manifest_file = folder / ELM_MANIFEST_FILE
    if not manifest_file.is_file():
        problems.append(f"{ELM_MANIFEST_FILE} (the ELM's family, input dimensions and vocabulary) is missing")
    else:
        manifest = read_json_file(manifest_file, "ELM manifest (JSON object)")
        saved = manifest.get("input") if isinstance(manifest, dict) else None
        if not isinstance(manifest, dict):
            problems.append(f"{ELM_MANIFEST_FILE}: expected a JSON object, got {type(manifest).__name__}")
        elif isinstance(saved, dict) and saved.get("fs") != contract.fs:
            problems.append(f"{ELM_MANIFEST_FILE} says input fs {saved.get('fs')!r}, {CONTRACT_FILE} says {contract.fs!r}")
    if problems:
        raise DataError(f"{folder}: the checkpoint's files disagree: " + "; ".join(problems))
    return contract
