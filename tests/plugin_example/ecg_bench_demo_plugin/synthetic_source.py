"""``demo_synthetic``: the synthetic source's records with every signal scaled by ``gain``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ecg_bench.data.record import ECGRecord
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.sources.synthetic import Synthetic, SyntheticOptions


@dataclass
class ScaledSyntheticOptions(SyntheticOptions):
    """Synthetic ECGs with every signal multiplied by ``gain``."""

    gain: float = 2.0
    """Factor applied to every signal."""

    def problems(self) -> list[str]:
        return super().problems() + ([] if self.gain > 0 else [f"gain must be positive, got {self.gain}"])


@SOURCES.register("demo_synthetic", options=ScaledSyntheticOptions)
class ScaledSynthetic(Synthetic):
    """Synthetic records scaled by ``gain``."""

    options_type = ScaledSyntheticOptions

    def read(self, key: str) -> ECGRecord:
        rec = super().read(key)
        return dataclasses.replace(rec, signal=rec.signal * self.opts.gain)

    def settings(self) -> dict:
        return {**super().settings(), "gain": self.opts.gain}
