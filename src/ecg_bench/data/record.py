"""The one record type every source yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecg_bench.errors import DataError, ShapeError
from ecg_bench.limits import hint, limit
from ecg_bench.signals.io import check_rate_bounds
from ecg_bench.signals.leads import LEADS

__all__ = ["LEADS", "ECGRecord"]  # LEADS lives in signals/leads.py; re-exported here for existing imports


@dataclass
class ECGRecord:
    """One ECG as read from a source, before preprocessing.

    ``signal`` is float32 [leads, samples] in millivolts, with ``leads`` naming its rows.
    """

    record_id: str
    """Unique id of the record within its dataset (e.g. PTB-XL ecg_id, file stem)."""
    patient_id: str
    """Patient the record belongs to; folds never split a patient."""
    signal: np.ndarray
    """float32 [leads, samples] in mV."""
    fs: float
    """Sampling rate in Hz."""
    leads: tuple[str, ...] = LEADS
    """Lead names, one per row of ``signal``."""
    report: str = ""
    """Free-text report (machine or cardiologist), English where available."""
    labels: list[str] = field(default_factory=list)
    """Diagnostic labels / statements (names, not codes)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Anything else the source knows (age, sex, device, synthetic ground truth, ...). JSON-serialisable."""

    def __post_init__(self) -> None:
        sig = np.asarray(self.signal)
        if sig.ndim != 2 or sig.shape[0] != len(self.leads):
            raise ShapeError(f"record {self.record_id} signal", sig.shape, f"[{len(self.leads)} leads, samples]")
        where = f"record {self.record_id}" + (f" ({self.metadata['file']})" if "file" in self.metadata else "")
        self.fs = check_rate_bounds(where, self.fs)
        self.signal = sig.astype(np.float32, copy=False)
        check_amplitude(self.signal, where)


IMPLAUSIBLE_AMPLITUDE = "implausible amplitude"
"""A sample beyond ``limits.MAX_ABS_MV`` (or infinite): corrupt, or in other units than the file says."""


def check_amplitude(signal: np.ndarray, where: str) -> None:
    """Raise ``implausible amplitude`` when a sample of ``signal`` (mV; NaN ignored) exceeds ``MAX_ABS_MV`` in size."""
    top = limit("MAX_ABS_MV")
    with np.errstate(invalid="ignore"):
        bad = np.abs(signal) > top
    if bad.any():
        lead, i = (int(x[0]) for x in np.nonzero(bad)[:2]) if signal.ndim == 2 else (0, int(np.flatnonzero(bad)[0]))
        value = float(signal[lead, i]) if signal.ndim == 2 else float(signal.flat[i])
        err = DataError(f"{where}: sample {i} of lead {lead} is {value:.4g} mV, beyond the {top:g} mV a surface ECG "
                        f"reaches (corrupt, or in other units than stated; {hint('MAX_ABS_MV')})")  # fmt: skip
        err.reason = IMPLAUSIBLE_AMPLITUDE  # type: ignore[attr-defined]
        raise err
