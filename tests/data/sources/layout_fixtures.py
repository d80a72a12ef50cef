"""Faithful PTB-XL / MIMIC-IV-ECG / CODE-15% folder layouts in tmp_path, built from the real PTB-XL records
in ../shared/data/ptbxl (copied, re-written in another layout, or damaged in named ways)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecg_bench.signals.processing import resample

PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
"""MIMIC-IV-ECG's stored lead order (aVF before aVL)."""


def ptbxl_record(shared_data: Path, ecg_id: int) -> Path:
    """Path (without extension) of a real PTB-XL 500 Hz record."""
    return shared_data / "ptbxl" / "records500" / f"{ecg_id // 1000 * 1000:05d}" / f"{ecg_id:05d}_hr"


def real_signal(shared_data: Path, ecg_id: int) -> np.ndarray:
    """A real PTB-XL record as float64 [5000, 12] in mV, PTB-XL (= canonical) lead order, via wfdb.rdsamp."""
    sig, fields = wfdb.rdsamp(str(ptbxl_record(shared_data, ecg_id)))
    assert tuple(fields["sig_name"]) == PTBXL_LEADS and fields["fs"] == 500
    return sig


def copy_ptbxl(shared_data: Path, dst: Path) -> Path:
    """A full copy of the shared PTB-XL folder (10 records, both CSVs) at ``dst``."""
    shutil.copytree(shared_data / "ptbxl", dst)
    return dst


def write_wfdb(path: Path, signal: np.ndarray, fs: float, names, gain: float = 1000.0) -> None:
    """Write ``signal`` [samples, leads] (mV) as a format-16 WFDB record at ``path`` (no extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        path.name,
        fs=fs,
        units=["mV"] * signal.shape[1],
        sig_name=list(names),
        p_signal=np.asarray(signal, dtype=np.float64),
        fmt=["16"] * signal.shape[1],
        adc_gain=[gain] * signal.shape[1],
        baseline=[0] * signal.shape[1],
        write_dir=str(path.parent),
    )


def truncate(dat: Path, keep_fraction: float = 0.5) -> None:
    data = dat.read_bytes()
    dat.write_bytes(data[: int(len(data) * keep_fraction)])


def flip_sample(dat: Path, byte: int = 1001) -> None:
    """Change one byte of the samples (the file keeps its size; the checksums no longer match)."""
    data = bytearray(dat.read_bytes())
    data[byte] ^= 0x5A
    dat.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------------
# MIMIC-IV-ECG

MM_EXTRA = {
    "cart_id": 6848296,
    "bandwidth": "0.005-150 Hz",
    "filtering": "60 Hz notch Baseline filter",
    "rr_interval": 659,
    "qrs_axis": 48,
}


def mimic_path(subject: int, study: int) -> str:
    return f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"


def write_mimic(root: Path, studies: list[dict]) -> Path:
    """MIMIC-IV-ECG layout. Each study: subject, study, signal ([5000, 12] mV in MIMIC lead order, or None for no
    file), reports (list of report_i strings), in_measurements (bool), names (lead names, default MIMIC_LEADS)."""
    rl, mm = [], []
    for s in studies:
        path = mimic_path(s["subject"], s["study"])
        if s.get("signal") is not None:
            write_wfdb(root / path, s["signal"], 500, s.get("names", MIMIC_LEADS), gain=200.0)
        rl.append(
            {
                "subject_id": s["subject"],
                "study_id": s["study"],
                "file_name": s["study"],
                "ecg_time": s.get("time", "2180-07-23 08:44:00"),
                "path": path,
            }
        )
        if s.get("in_measurements", True):
            row = {
                "subject_id": s["subject"],
                "study_id": s["study"],
                "cart_id": MM_EXTRA["cart_id"],
                "ecg_time": "2180-07-23 08:44:00",
            }
            reports = list(s.get("reports", []))
            row.update({f"report_{i}": (reports[i] if i < len(reports) else None) for i in range(18)})
            row.update({k: v for k, v in MM_EXTRA.items() if k != "cart_id"})
            mm.append(row)
    pd.DataFrame(rl).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm).to_csv(root / "machine_measurements.csv", index=False)
    return root


def to_mimic_order(signal: np.ndarray) -> np.ndarray:
    """[samples, 12] in canonical order -> MIMIC-IV-ECG order (swap aVL and aVF)."""
    return signal[:, [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]]


# --------------------------------------------------------------------------------------------------
# CODE-15%


def code15_tracing(signal_500: np.ndarray, seconds: float = 10.0) -> np.ndarray:
    """A real [5000, 12] 500 Hz signal as a CODE-15% tracing: 400 Hz, first ``seconds``, zero-padded (centred) to 4096."""
    at400 = resample(signal_500.T, 500, 400).T[: int(seconds * 400)]
    pad = (4096 - at400.shape[0]) // 2
    out = np.zeros((4096, 12), dtype=np.float32)
    out[pad : pad + at400.shape[0]] = at400
    return out


def write_code15_part(path: Path, exams: list[tuple[int, np.ndarray]], filler: bool = True) -> None:
    """exams_partN.hdf5 with 'tracings' [N, 4096, 12] float32 and 'exam_id' [N]; ``filler`` appends the
    all-zero exam_id 0 row the real files end with."""
    import h5py

    ids = [e for e, _ in exams] + ([0] if filler else [])
    tr = [t for _, t in exams] + ([np.zeros((4096, 12), np.float32)] if filler else [])
    with h5py.File(path, "w") as f:
        f.create_dataset("tracings", data=np.stack(tr).astype(np.float32))
        f.create_dataset("exam_id", data=np.asarray(ids, dtype=np.int64))


def write_exams_csv(root: Path, rows: list[dict]) -> None:
    """exams.csv with the release's columns; each row gives exam_id, patient_id, trace_file and any positive labels."""
    cols = [
        "exam_id",
        "age",
        "is_male",
        "nn_predicted_age",
        "1dAVb",
        "RBBB",
        "LBBB",
        "SB",
        "ST",
        "AF",
        "patient_id",
        "death",
        "timey",
        "normal_ecg",
        "trace_file",
    ]
    full = []
    for r in rows:
        base = {
            "age": 57,
            "is_male": True,
            "nn_predicted_age": 55.4,
            "death": False,
            "timey": 5.2,
            "normal_ecg": False,
            **{c: False for c in ("1dAVb", "RBBB", "LBBB", "SB", "ST", "AF")},
        }
        base.update(r)
        full.append(base)
    pd.DataFrame(full, columns=cols).to_csv(root / "exams.csv", index=False)
