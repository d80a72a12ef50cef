"""The representation registry. A representation turns one store segment into model input:

    @REPRESENTATIONS.register("name")
    class MyRepresentation(Representation):
        def __init__(self, **kwargs): ...
        def __call__(self, segment: np.ndarray) -> torch.Tensor: ...   # segment: float32 [12, L]
        def shape(self, segment_len: int) -> tuple[int, ...]: ...      # shape of the output

Dimensions come in as arguments (``segment_len``), never from global tables.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from ecg_bench.registry import Registry


class Representation:
    """Base class: segment ``[12, L]`` -> tensor of ``shape(L)``."""

    def __init__(self, **kwargs) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected options {sorted(kwargs)}")

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def shape(self, segment_len: int) -> tuple[int, ...]:
        raise NotImplementedError


REPRESENTATIONS: Registry[type[Representation]] = Registry("representation")

# Modules whose import registers a built-in representation (imported so REPRESENTATIONS.get sees them all).
_BUILTIN_MODULES = ("ecg_bench.representations.signal", "ecg_bench.representations.ecg_byte")

for _mod in _BUILTIN_MODULES:
    importlib.import_module(_mod)
