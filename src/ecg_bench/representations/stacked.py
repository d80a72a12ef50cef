"""The signal as a 3-channel image, as the original ECG-Bench's ``stacked`` input: float32 ``[3, 12, L]``, 0-255.

The segment is min-max scaled over ALL its leads and samples together (one min and one max per segment, so
the leads keep their relative amplitudes), to ``[0, 1]`` with ``eps`` added to the range, times 255,
truncated to whole numbers as the original's ``uint8`` cast does, and the one channel is repeated three
times (an RGB image of 12 rows by L columns, which a vision encoder resizes to its own size). A constant
segment (the ``zeros`` condition) becomes all zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ecg_bench.config import RepresentationOptions
from ecg_bench.errors import ConfigError, DataError, ShapeError
from ecg_bench.representations.base import REPRESENTATIONS, Representation
from ecg_bench.signals.leads import LEADS


@dataclass
class StackedOptions(RepresentationOptions):
    """The signal as a 3-channel image [3, 12, L], 0-255 (min-max over the segment; for vision encoders)."""

    eps: float = 1e-6
    """Added to the segment's max - min before dividing (the original's norm_eps)."""

    def problems(self) -> list[str]:
        if not (isinstance(self.eps, int | float) and math.isfinite(self.eps) and 0 < self.eps <= 1):
            return [f"eps must be in (0, 1], got {self.eps!r}"]
        return []

    def check(self) -> None:
        """Raise ConfigError listing the problems (for options built in Python, not through the config)."""
        p = self.problems()
        if p:
            raise ConfigError([f"stacked representation: {m}" for m in p])


@REPRESENTATIONS.register("stacked", options=StackedOptions)
class StackedRepresentation(Representation):
    """Segment ``[12, L]`` -> ``[3, 12, L]``: min-max over the segment to 0-255, one channel repeated three times."""

    kind = "image"

    def __init__(self, options: StackedOptions | None = None, **fields) -> None:
        super().__init__()
        if options is not None and fields:
            raise TypeError("stacked representation: pass a StackedOptions or its fields, not both")
        self.options = options or StackedOptions(**fields)
        self.options.check()

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        x = np.asarray(segment, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(LEADS) or x.shape[1] < 1:
            raise ShapeError("stacked representation input", x.shape, f"[{len(LEADS)}, L]")
        if not np.isfinite(x).all():
            raise DataError(f"stacked representation input has {int((~np.isfinite(x)).sum())} NaN/inf values")
        lo, hi = x.min(), x.max()
        scaled = np.floor(np.clip((x - lo) / (hi - lo + self.options.eps), 0.0, 1.0) * 255.0).astype(np.float32)
        return torch.from_numpy(scaled).unsqueeze(0).expand(3, -1, -1).contiguous()

    def shape(self, segment_len: int) -> tuple[int, ...]:
        return (3, len(LEADS), int(segment_len))
