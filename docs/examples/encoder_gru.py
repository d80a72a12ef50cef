"""An encoder: a bidirectional GRU over the (downsampled) signal, pooled into num_tokens tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec


@dataclass
class GruOptions(EncoderOptions):  # inherits freeze
    """Bidirectional GRU over the signal, pooled in time into num_tokens tokens."""

    dim: int = 128
    """Width of each output token."""
    num_tokens: int = 4
    """Output tokens per ECG."""
    hidden: int = 64
    """GRU hidden size per direction."""
    stride: int = 4
    """Average-pool the signal by this factor before the GRU (fewer steps)."""

    def problems(self) -> list[str]:
        return [f"{n} must be >= 1, got {getattr(self, n)}" for n in ("dim", "num_tokens", "hidden", "stride")
                if getattr(self, n) < 1]  # fmt: skip


class GruEncoder(nn.Module):
    def __init__(self, in_leads: int, opts: GruOptions):
        super().__init__()
        self.out_dim, self.num_tokens, self.stride = opts.dim, opts.num_tokens, opts.stride  # build_encoder checks both
        self.gru = nn.GRU(in_leads, opts.hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * opts.hidden, opts.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, leads, L] -> [N, num_tokens, dim]
        h, _ = self.gru(F.avg_pool1d(x, self.stride).transpose(1, 2))  # [N, T, 2 * hidden]
        pooled = F.adaptive_avg_pool1d(h.transpose(1, 2), self.num_tokens)  # [N, 2 * hidden, num_tokens]
        return self.out(pooled.transpose(1, 2))


@ENCODERS.register("gru", options=GruOptions)
def gru(opts: GruOptions, spec: EncoderSpec) -> nn.Module:  # spec: in_leads, seq_len, fs, input_kind, input_shape
    return GruEncoder(spec.in_leads, opts)


gru.input_kinds = ("signal",)  # the representation kinds it reads (("signal", "image") for one that also reads pictures)
