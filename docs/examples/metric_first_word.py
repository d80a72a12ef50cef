"""A metric: 1 when the answer's first word is the reference's first word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ecg_bench.config import MetricOptions
from ecg_bench.evaluation.metrics import AnswerSample, Scores, register_metric


@dataclass
class FirstWordOptions(MetricOptions):
    """1 when the answer's first word is the reference's first word (punctuation stripped)."""

    lower: bool = True
    """Compare case-insensitively."""


def _first(text: str, lower: bool) -> str:
    words = text.split()
    word = words[0].strip(".,;:!?") if words else ""
    return word.lower() if lower else word


@register_metric("first_word", FirstWordOptions)
def first_word(samples: Sequence[AnswerSample], options: FirstWordOptions) -> Scores:
    return {"first_word": np.array([float(_first(s.prediction, options.lower) != "" and
                                          _first(s.prediction, options.lower) == _first(s.reference, options.lower))
                                    for s in samples])}  # fmt: skip
