"""The preprocessing contract of a pretrained encoder: what its weights expect to be fed.

Saved with every encoder checkpoint (``encoder.json``) and checked when the encoder is built for a run:
an encoder pretrained on 250 Hz, 1250-sample, min-max scaled segments in the canonical lead order
silently reads garbage from 500 Hz input, so every difference is an error naming both sides.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from ecg_bench.errors import DataError
from ecg_bench.limits import hint, limit
from ecg_bench.signals.leads import LEADS

SCALINGS = ("minmax", "zscore", "none")
"""How an encoder scales each segment before patching: min-max to [0, 1] over the whole segment (the original
ECG-Bench), z-score over the whole segment (ST-MEM's released weights), or the representation as given (mV)."""


@dataclass(frozen=True)
class PreprocessingContract:
    """The input an encoder's weights were trained on."""

    fs: float
    """Sampling rate (Hz)."""
    segment_len: int
    """Samples per segment."""
    leads: tuple[str, ...] = field(default_factory=lambda: tuple(LEADS))
    """Lead order of the input channels."""
    scaling: str = "minmax"
    """Per-segment scaling inside the encoder (one of SCALINGS)."""
    representation: dict | None = None
    """How the segment became the encoder's input, for encoders of a drawn picture (the vision encoders): the
    representation's type and drawing options (``model.representation`` without its training-only augmentations);
    None for encoders of the signal."""

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.fs) and 0 < self.fs <= limit("MAX_SAMPLING_RATE")):
            problems.append(f"fs must be a positive rate of at most {limit('MAX_SAMPLING_RATE'):g} Hz, got {self.fs!r}")
        if isinstance(self.segment_len, bool) or not isinstance(self.segment_len, int) or self.segment_len < 1:
            problems.append(f"segment_len must be a whole number of samples >= 1, got {self.segment_len!r}")
        elif self.segment_len * max(len(self.leads), 1) > limit("MAX_RECORD_VALUES"):
            problems.append(f"segment_len {self.segment_len:,} is longer than a record may be ({hint('MAX_RECORD_VALUES')})")
        if self.scaling not in SCALINGS:
            problems.append(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if problems:
            raise DataError("invalid encoder preprocessing contract: " + "; ".join(problems))

    def to_json(self) -> dict:
        d = asdict(self)
        d["leads"] = list(self.leads)
        if self.representation is None:
            del d["representation"]
        return d

    @classmethod
    def from_json(cls, d: dict, where: str = "encoder.json") -> "PreprocessingContract":
        try:
            rep = d.get("representation")
            if rep is not None and not isinstance(rep, dict):
                raise TypeError(f"representation must be a mapping, got {rep!r}")
            return cls(float(d["fs"]), int(d["segment_len"]), tuple(str(x) for x in d["leads"]), str(d["scaling"]), rep)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{where}: preprocessing contract needs fs, segment_len, leads, scaling; got {d!r}") from e

    def check(self, used: "PreprocessingContract", weights: str, run: str = "this run") -> None:
        """Raise DataError listing every field where ``used`` (the run's input) differs from these weights' contract
        (the representation where both name one: a picture drawn otherwise is another input; ``used`` without one is
        an encoder built outside a run, e.g. in a test, whose input the caller answers for)."""
        diffs = [
            f"{name}: weights expect {getattr(self, name)!r}, {run} gives {getattr(used, name)!r}"
            for name in ("fs", "segment_len", "leads", "scaling")
            if getattr(self, name) != getattr(used, name)
        ]
        if self.representation is not None and used.representation is not None:
            mine, theirs = self.representation, used.representation
            diffs += [f"model.representation.{k}: weights expect {mine.get(k)!r}, {run} gives {theirs.get(k)!r}"
                      for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]  # fmt: skip
        if diffs:
            raise DataError(f"encoder weights {weights} do not match {run}'s preprocessing: " + "; ".join(diffs)
                            + " (set data.target_fs / data.segment_seconds"
                            + (" / model.representation" if self.representation is not None else "")
                            + " to the weights' values)")  # fmt: skip


def scale(x: torch.Tensor, how: str, eps: float = 1e-6) -> torch.Tensor:
    """Per-segment scaling over leads and time (``[B, leads, L]``)."""
    if how == "minmax":
        lo, hi = x.amin((1, 2), keepdim=True), x.amax((1, 2), keepdim=True)
        return (x - lo) / (hi - lo + eps)
    if how == "zscore":
        return (x - x.mean((1, 2), keepdim=True)) / (x.std((1, 2), keepdim=True) + eps)
    return x
