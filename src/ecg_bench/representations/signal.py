"""The raw signal as model input: float32 ``[12, L]``.

- ``signal``: millivolts with each lead's mean removed, clipped to +-``clip`` mV. Amplitude is kept
  because it is diagnostic (low QRS voltage, hypertrophy criteria are written in mV).
- ``signal_zscore``: per-lead z-score, as many published encoders expect; amplitude is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ecg_bench.config import RepresentationOptions
from ecg_bench.errors import DataError, ShapeError
from ecg_bench.representations.base import REPRESENTATIONS, Representation
from ecg_bench.signals.leads import LEADS
from ecg_bench.signals.processing import zscore


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != len(LEADS) or x.shape[1] < 1:
        raise ShapeError("signal representation input", x.shape, f"[{len(LEADS)}, L]")
    if not np.isfinite(x).all():
        raise DataError(f"signal representation input has {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x


@dataclass
class SignalOptions(RepresentationOptions):
    """The raw signal in millivolts, [12, L]."""

    clip: float = 5.0
    """Clip each lead (mean removed) to +-clip mV, so one artefact cannot dominate."""

    def problems(self) -> list[str]:
        return [f"clip must be positive, got {self.clip}"] if not self.clip > 0 else []


@dataclass
class ZScoreOptions(RepresentationOptions):
    """The raw signal z-scored per lead, [12, L] (amplitude is lost)."""

    eps: float = 1e-3
    """Floor of the standard deviation (mV), so a flat lead becomes zeros."""

    def problems(self) -> list[str]:
        return [f"eps must be positive, got {self.eps}"] if not self.eps > 0 else []


@REPRESENTATIONS.register("signal", options=SignalOptions)
class SignalRepresentation(Representation):
    """Millivolts, per-lead mean removed, clipped to +-``clip`` mV (so one artefact cannot dominate)."""

    def __init__(self, clip: float = 5.0) -> None:
        super().__init__()
        if clip <= 0:
            raise ValueError(f"clip must be positive, got {clip}")
        self.clip = float(clip)

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        x = _check(segment).astype(np.float32)
        x = np.clip(x - x.mean(axis=-1, keepdims=True), -self.clip, self.clip)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def shape(self, segment_len: int) -> tuple[int, ...]:
        return (len(LEADS), int(segment_len))


@REPRESENTATIONS.register("signal_zscore", options=ZScoreOptions)
class ZScoreRepresentation(SignalRepresentation):
    """Per-lead z-score. ``eps`` (mV) floors the standard deviation so a flat lead becomes zeros."""

    def __init__(self, eps: float = 1e-3) -> None:
        Representation.__init__(self)
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(zscore(_check(segment), axis=-1, eps=self.eps))
