"""ECG-Byte token ids as a representation: segment ``[leads, L]`` (mV) -> int64 ids ``[T]``.

``T`` depends on the signal (BPE merges runs of symbols), so ``shape(L)`` gives the upper bound
``(leads * L,)`` (one symbol per token). The token ELM (``elm=ecg_byte``) and the ``signal2vec``
encoder use this on the signal representation's output; Signal2Vec pretraining uses it on store
segments. It needs a tokenizer, so it cannot be built by name alone:
``ECGByteRepresentation(tokenizer="tok.json")`` or with an ``ECGByteTokenizer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ecg_bench.config import RepresentationOptions, path_field
from ecg_bench.errors import ConfigError, DataError, ShapeError
from ecg_bench.representations.base import REPRESENTATIONS, Representation

if TYPE_CHECKING:
    from ecg_bench.ecg_byte import ECGByteTokenizer


@dataclass
class ECGByteRepresentationOptions(RepresentationOptions):
    """ECG-Byte token ids of the signal (used inside the ecg_byte ELM and the signal2vec encoder)."""

    tokenizer: str = path_field()
    """ECG-Byte tokenizer JSON."""

    def problems(self) -> list[str]:
        return ["token ids are what --model.elm.type ecg_byte builds from its tokenizer itself; use that ELM with a "
                "signal representation (default 'signal')"]  # fmt: skip


@REPRESENTATIONS.register("ecg_byte", options=ECGByteRepresentationOptions)
class ECGByteRepresentation(Representation):
    """Symbolize and BPE-encode one segment with an ECG-Byte tokenizer (a file path or a loaded tokenizer)."""

    kind = "tokens"
    dtype = torch.long
    variable_length = True

    def __init__(self, tokenizer: "str | ECGByteTokenizer" = "") -> None:
        super().__init__()
        from ecg_bench.ecg_byte import ECGByteTokenizer

        if isinstance(tokenizer, ECGByteTokenizer):
            self.tokenizer = tokenizer
        elif tokenizer:
            self.tokenizer = ECGByteTokenizer.load(tokenizer)
        else:
            raise ConfigError(["representation 'ecg_byte' needs an ECG-Byte tokenizer file (model.representation.tokenizer / tokenizer=PATH)"])
        self.num_leads = len(self.tokenizer.leads) if self.tokenizer.leads else None

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        x = np.asarray(segment, dtype=np.float32)
        if x.ndim != 2 or (self.num_leads is not None and x.shape[0] != self.num_leads):
            raise ShapeError("ecg_byte representation input", x.shape, f"[{self.num_leads or 'leads'}, L]")
        if not np.isfinite(x).all():
            raise DataError(f"ecg_byte representation input has {int((~np.isfinite(x)).sum())} NaN/inf values")
        return torch.tensor(self.tokenizer.encode_signal(x), dtype=torch.long)

    def encode_many(self, segments: np.ndarray) -> list[np.ndarray]:
        """``[n, leads, L]`` -> one id array per segment, encoded together (much faster than one by one)."""
        return self.tokenizer.encode_signals(np.asarray(segments, dtype=np.float32))[0]

    def shape(self, segment_len: int) -> tuple[int, ...]:
        """Upper bound on the number of ids: one per symbol."""
        return ((self.num_leads or 12) * int(segment_len),)
