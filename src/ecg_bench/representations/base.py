"""The representation registry. A representation turns one store segment into model input:

    @REPRESENTATIONS.register("name")
    class MyRepresentation(Representation):
        kind = "signal"                                                # or "tokens", "image" ([3, H, W], 0-255)
        def __init__(self, **kwargs): ...
        def __call__(self, segment: np.ndarray) -> torch.Tensor: ...   # segment: float32 [12, L]
        def shape(self, segment_len: int) -> tuple[int, ...]: ...      # shape of the output

``output(segment_len)`` declares what comes out (kind, shape, dtype, whether the length varies), so a
model is built from the declaration, not from a sample. The input is always a SIGNAL (mV, canonical
lead order): evaluation conditions (``evaluation/conditions/``) change the signal first, and the
representation turns the result into model input, whatever its form. Dimensions come in as arguments
(``segment_len``), never from global tables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ecg_bench.config import RepresentationOptions
from ecg_bench.errors import DataError
from ecg_bench.registry import Registry


@dataclass(frozen=True)
class RepresentationOutput:
    """What a representation makes of one ``[12, segment_len]`` segment."""

    kind: str
    """signal ([leads, L] floats), tokens (a 1-D id sequence), image ([3, H, W] pixel values 0-255)."""
    shape: tuple[int, ...]
    """Output shape (an upper bound where ``variable_length``)."""
    dtype: torch.dtype
    variable_length: bool = False


class Representation:
    """Base class: segment ``[12, L]`` -> tensor of ``shape(L)``."""

    kind: ClassVar[str] = "signal"
    dtype: ClassVar[torch.dtype] = torch.float32
    variable_length: ClassVar[bool] = False
    needs_fs: ClassVar[bool] = False
    """True when build_representation passes the segments' sampling rate (``cls(..., fs=...)``), e.g. to draw 25 mm/s."""

    def __init__(self, **kwargs) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected options {sorted(kwargs)}")

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def shape(self, segment_len: int) -> tuple[int, ...]:
        raise NotImplementedError

    def for_evaluation(self) -> "Representation":
        """The representation evaluation uses: this one without training-only randomness (augmentations)."""
        return self

    def reseed(self, seed: int) -> None:
        """Restart the training-only randomness (augmentations) from ``seed``, e.g. the step of a pretraining run, so
        a resumed run draws what an uninterrupted one would. Default: nothing to restart."""

    def output(self, segment_len: int) -> RepresentationOutput:
        """The declared output for ``segment_len``-sample segments."""
        return RepresentationOutput(self.kind, tuple(self.shape(segment_len)), self.dtype, self.variable_length)

    def represent(self, segments: np.ndarray) -> torch.Tensor:
        """``[n, 12, L]`` signals (e.g. one item's ECGs under an evaluation condition) -> ``[n, *shape(L)]``."""
        if self.variable_length:
            raise DataError(f"{type(self).__name__} makes variable-length {self.kind}; they cannot be stacked into one tensor "
                            "(the token ELM's processor encodes each ECG itself)")  # fmt: skip
        return torch.stack([self(s) for s in segments])


REPRESENTATIONS: Registry[type[Representation]] = Registry("representation", options=RepresentationOptions, package="ecg_bench.representations")
"""A representation class is built from its options' fields as keyword arguments (``build_representation``)."""


def build_representation(opts: RepresentationOptions, fs: float = 250.0) -> Representation:
    """The representation ``opts`` chooses, built with its options (and ``fs``, the segments' sampling rate in Hz,
    for a class that ``needs_fs``)."""
    cls = REPRESENTATIONS.get(opts.type)
    kwargs = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
    if cls.needs_fs:
        kwargs["fs"] = float(fs)
    return cls(**kwargs)
