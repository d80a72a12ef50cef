"""An evaluation condition: every lead clipped to +-mv (does the model need the peaks?)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecg_bench.config import ConditionOptions
from ecg_bench.evaluation.conditions import CONDITIONS, Condition, ReadSignals


@dataclass
class ClipOptions(ConditionOptions):
    """The ECG with every lead clipped to +-mv."""

    mv: float = 0.5
    """Clip every lead to +-mv (millivolts)."""

    def problems(self) -> list[str]:
        return [f"mv must be > 0, got {self.mv}"] if not self.mv > 0 else []


@CONDITIONS.register("clipped", options=ClipOptions)
class Clipped(Condition):
    """The ECG with every lead clipped to +-mv."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:  # read(i): the item's segments [n, 12, L] in mV
        return np.clip(read(i), -self.options.mv, self.options.mv)
