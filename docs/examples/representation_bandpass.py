"""A representation: the signal band-pass filtered (zero phase), [12, L] in mV."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import butter, sosfiltfilt

from ecg_bench.config import RepresentationOptions
from ecg_bench.representations.base import REPRESENTATIONS, Representation


@dataclass
class BandpassOptions(RepresentationOptions):
    """The signal through a zero-phase Butterworth band-pass."""

    low_hz: float = 0.5
    """High-pass corner (Hz): removes baseline wander."""
    high_hz: float = 40.0
    """Low-pass corner (Hz): removes mains hum and muscle noise; below half the sampling rate."""
    order: int = 2
    """Filter order (applied forwards and backwards)."""

    def problems(self) -> list[str]:
        return [] if 0 < self.low_hz < self.high_hz else [f"need 0 < low_hz < high_hz, got {self.low_hz}, {self.high_hz}"]


@REPRESENTATIONS.register("bandpass", options=BandpassOptions)
class Bandpass(Representation):
    kind = "signal"
    needs_fs = True  # build_representation passes the segments' sampling rate

    def __init__(self, low_hz: float = 0.5, high_hz: float = 40.0, order: int = 2, fs: float = 250.0):
        super().__init__()
        self.sos = butter(order, [low_hz, min(high_hz, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(sosfiltfilt(self.sos, segment, axis=-1).astype(np.float32))

    def shape(self, segment_len: int) -> tuple[int, ...]:
        return (12, segment_len)
