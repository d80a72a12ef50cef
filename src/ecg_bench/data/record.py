"""The one record type every source yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecg_bench.errors import DataError, ShapeError
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
        if self.fs <= 0:
            raise DataError(f"record {self.record_id}: sampling rate must be positive, got {self.fs}")
        self.signal = sig.astype(np.float32, copy=False)
