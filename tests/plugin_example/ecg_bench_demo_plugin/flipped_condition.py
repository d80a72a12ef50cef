"""``demo_flipped``: the item's ECG with every lead's polarity inverted."""

from __future__ import annotations

import numpy as np

from ecg_bench.evaluation.conditions import CONDITIONS, Condition, ReadSignals


@CONDITIONS.register("demo_flipped")
class Flipped(Condition):
    """The ECG upside down: the same rhythm and rate, every deflection inverted."""

    def signals(self, i: int, read: ReadSignals) -> np.ndarray:
        return -np.asarray(read(i))
