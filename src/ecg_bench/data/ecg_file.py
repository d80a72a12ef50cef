"""One ECG file of any supported format -> an ``ECGRecord`` (mV, named leads, its own rate), for using a model.

The same low-level readers and checks the dataset sources use:

- a WFDB record (``rec``, ``rec.hea`` or ``rec.dat``; PTB-XL, MIMIC-IV-ECG, ...): ``signals.io.read_wfdb``
  (header, file sizes, checksums, units to mV);
- a PhysioNet/CinC ``.mat`` + ``.hea`` pair (CPSC 2018, CSN, ...): the CinC reader's ``parse_header``,
  ``load_val``, ``check_against_header`` and ``to_millivolts``;
- a CODE-15% HDF5 file (``exams_partN.hdf5``) and an exam id: its ``tracings`` row, zero padding stripped as
  the ``code15`` source does, 400 Hz;
- a ``.npy`` or ``.csv`` array ``[leads, samples]`` (the sampling rate given by the caller; rows are the 12
  standard leads in order unless named; values in mV unless ``units`` says otherwise).

Bad input (missing file, unreadable file, a wrong shape, too many values, a missing rate) is a DataError
naming the file and what was expected. Preprocessing (lead order, NaN policy, resampling, segmenting) is
not done here: that is the model's preprocessing contract (``data.contract``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecg_bench.data.record import ECGRecord
from ecg_bench.errors import DataError
from ecg_bench.limits import hint, limit
from ecg_bench.signals.io import check_rate_bounds, check_record_size, read_npy, read_wfdb
from ecg_bench.signals.leads import LEADS

FORMATS = "a WFDB record (.hea/.dat), a CinC .mat/.hea pair, a CODE-15% .hdf5 file with an exam id, or a .npy/.csv array"
_UNITS = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


def read_ecg_file(
    path: str | Path,
    fs: float | None = None,
    exam_id: int | None = None,
    leads: Sequence[str] | None = None,
    units: str = "mV",
    verify_checksums: bool = True,
) -> ECGRecord:
    """Read one ECG file (see the module doc). ``fs``, ``leads`` and ``units`` describe a .npy/.csv array; for a
    file whose header states its rate, a different ``fs`` is refused. ``exam_id`` picks a CODE-15% exam."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix in (".npy", ".csv"):
        return _read_array(p, fs, leads, units)
    if leads is not None or units != "mV":
        raise DataError(f"{p}: lead names and units are given only for a .npy/.csv array; this file's header names them")
    if suffix in (".hdf5", ".h5"):
        rec = _read_code15(p, exam_id)
    elif suffix in (".hea", ".dat", ".mat") or p.with_name(p.name + ".hea").is_file():
        stem = p.with_suffix("") if suffix in (".hea", ".dat", ".mat") else p
        rec = _read_header_record(stem, verify_checksums)
    elif not p.exists():
        raise FileNotFoundError(f"ECG file not found: {p} (nor {p.name}.hea beside it)")
    else:
        raise DataError(f"{p}: unknown ECG file type {suffix or '(no extension)'!r}; expected {FORMATS}")
    if fs is not None and abs(float(fs) - rec.fs) > 1e-6:
        raise DataError(f"{p}: the file says {rec.fs:g} Hz but --fs {fs:g} was given; --fs is only for a .npy/.csv array")
    if exam_id is not None and suffix not in (".hdf5", ".h5"):
        raise DataError(f"{p}: an exam id is only for a CODE-15% .hdf5 file")
    return rec


def _read_header_record(stem: Path, verify_checksums: bool) -> ECGRecord:
    """A WFDB record, or a CinC pair when its header names a .mat file."""
    hea = stem.with_name(stem.name + ".hea")
    if not hea.is_file():
        raise FileNotFoundError(f"ECG header not found: {hea} (a WFDB record or CinC .mat needs its .hea beside it)")
    text = hea.read_text(encoding="utf-8", errors="replace")
    body = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(body) > 1 and body[1] and body[1][0].lower().endswith(".mat"):
        return _read_cinc(hea, text, verify_checksums)
    wf = read_wfdb(stem, verify_checksum=verify_checksums)
    return ECGRecord(record_id=stem.name, patient_id="", signal=wf.signal, fs=wf.fs, leads=tuple(wf.leads),
                     metadata={"file": str(hea)})  # fmt: skip


def _read_cinc(hea: Path, text: str, verify_checksums: bool) -> ECGRecord:
    from ecg_bench.data.sources.cinc import check_against_header, load_val, parse_header, to_millivolts

    hdr = parse_header(text, str(hea))
    files = {s.file_name for s in hdr.leads}
    if len(files) != 1:
        raise DataError(f"{hea}: leads must all be in one .mat file, header names {sorted(files)}")
    val = load_val(hea.parent / files.pop(), str(hea), (len(hdr.leads), hdr.num_samples))
    check_against_header(val, hdr, str(hea), verify_checksums)
    return ECGRecord(record_id=hea.stem, patient_id="", signal=to_millivolts(val, hdr), fs=hdr.fs,
                     leads=tuple(s.name for s in hdr.leads), metadata={"file": str(hea)})  # fmt: skip


def _read_code15(path: Path, exam_id: int | None) -> ECGRecord:
    from ecg_bench.data.sources.code15 import FS, strip_padding
    from ecg_bench.signals.io import hdf5_dataset, open_hdf5

    with open_hdf5(path) as f:
        ids = np.asarray(hdf5_dataset(f, "exam_id", 1)[:], dtype=np.int64)
        tracings = hdf5_dataset(f, "tracings", 3, (12,))
        if tracings.shape[0] != ids.shape[0]:
            raise DataError(f"{path}: {tracings.shape[0]} tracings but {ids.shape[0]} exam ids")
        real = [int(e) for e in ids if e != 0]  # the last row of each file is an all-zero filler with exam_id 0
        if exam_id is None:
            if len(real) != 1:
                shown = ", ".join(map(str, real[:5])) + (" ..." if len(real) > 5 else "")
                raise DataError(f"{path} holds {len(real)} exams ({shown}); name one with --exam_id")
            exam_id = real[0]
        rows = np.flatnonzero(ids == int(exam_id))
        if exam_id == 0 or rows.size == 0:
            raise DataError(f"{path}: no exam {exam_id}; it holds {len(real)} exams, e.g. {real[:3]}")
        tracing = np.asarray(tracings[int(rows[0])], dtype=np.float32)
    signal, start = strip_padding(tracing)
    if signal.shape[0] == 0:
        raise DataError(f"{path}: the tracing of exam {exam_id} is all zeros")
    return ECGRecord(record_id=str(exam_id), patient_id="", signal=np.ascontiguousarray(signal.T), fs=FS, leads=LEADS,
                     metadata={"file": str(path), "exam_id": int(exam_id), "padding_start": start})  # fmt: skip


def _read_array(path: Path, fs: float | None, leads: Sequence[str] | None, units: str) -> ECGRecord:
    if not path.is_file():
        raise FileNotFoundError(f"ECG file not found: {path}")
    if fs is None:
        raise DataError(f"{path}: a .npy/.csv array carries no sampling rate; give it (e.g. --fs 500)")
    fs = check_rate_bounds(f"{path}: --fs", fs)
    scale = _UNITS.get(units.strip().lower())
    if scale is None:
        raise DataError(f"{path}: units {units!r}; expected mV, uV or V")
    names = tuple(leads) if leads else LEADS
    if path.suffix.lower() == ".npy":
        arr = read_npy(path)  # the header's dtype and shape are checked before anything is mapped
    else:
        size = path.stat().st_size
        if size > limit("MAX_CSV_BYTES"):
            raise DataError(f"{path}: a {size:,}-byte .csv; at most {limit('MAX_CSV_BYTES'):,} bytes are read "
                            f"({hint('MAX_CSV_BYTES')})")  # fmt: skip
        try:
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise DataError(f"{path}: not a numeric .csv of [leads, samples] values without a header row ({e})") from None
    if arr.ndim != 2 or arr.dtype.kind not in "iuf":
        raise DataError(f"{path}: expected a real 2-D array [leads, samples], got {arr.dtype} with shape {tuple(arr.shape)}")
    if arr.shape[0] != len(names):  # before the size check: a transposed array is the common mistake
        hint = " (it looks like [samples, leads]: transpose it)" if arr.shape[1] == len(names) else ""
        raise DataError(f"{path}: {arr.shape[0]} rows, expected {len(names)} leads {list(names)} as rows of a "
                        f"[leads, samples] array{hint}")  # fmt: skip
    check_record_size(str(path), int(arr.shape[0]), int(arr.shape[0]) * int(arr.shape[1]))
    signal = np.asarray(arr, dtype=np.float64) * scale
    return ECGRecord(record_id=path.stem, patient_id="", signal=signal.astype(np.float32), fs=float(fs), leads=names,
                     metadata={"file": str(path)})  # fmt: skip
