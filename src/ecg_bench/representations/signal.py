"""The raw signal, z-scored per lead: float32 ``[12, L]``."""

from __future__ import annotations

import numpy as np
import torch

from ecg_bench.data.record import LEADS
from ecg_bench.errors import DataError, ShapeError
from ecg_bench.representations.base import REPRESENTATIONS, Representation
from ecg_bench.signals.processing import zscore


@REPRESENTATIONS.register("signal")
class SignalRepresentation(Representation):
    """Per-lead z-score. ``eps`` (mV) floors the standard deviation so a flat lead becomes zeros."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        x = np.asarray(segment)
        if x.ndim != 2 or x.shape[0] != len(LEADS) or x.shape[1] < 1:
            raise ShapeError("signal representation input", x.shape, f"[{len(LEADS)}, L]")
        if not np.isfinite(x).all():
            raise DataError(f"signal representation input has {int((~np.isfinite(x)).sum())} NaN/inf values")
        return torch.from_numpy(zscore(x, axis=-1, eps=self.eps))

    def shape(self, segment_len: int) -> tuple[int, ...]:
        return (len(LEADS), int(segment_len))
