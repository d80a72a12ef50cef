"""``demo_gru``: a GRU over the 12-lead signal, its last hidden states pooled into ``num_tokens`` tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions
from ecg_bench.errors import ShapeError
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec


@dataclass
class GruOptions(EncoderOptions):
    """A one-layer GRU over the signal (every 5th sample), pooled into tokens."""

    dim: int = 64
    """Width of each output token."""
    num_tokens: int = 4
    """Output tokens per ECG."""
    hidden: int = 32
    """GRU hidden size."""

    def problems(self) -> list[str]:
        return [f"{n} must be >= 1, got {getattr(self, n)}" for n in ("dim", "num_tokens", "hidden") if getattr(self, n) < 1]


class GruEncoder(nn.Module):
    def __init__(self, opts: GruOptions, spec: EncoderSpec):
        super().__init__()
        self.in_leads, self.num_tokens, self.out_dim = spec.in_leads, spec.num_tokens, spec.out_dim
        self.gru = nn.GRU(spec.in_leads, opts.hidden, batch_first=True)
        self.out = nn.Linear(opts.hidden, spec.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_leads:
            raise ShapeError("demo_gru encoder input", x.shape, f"[N, {self.in_leads}, samples]")
        h, _ = self.gru(x[:, :, ::5].transpose(1, 2))  # [N, T, hidden]
        return self.out(F.adaptive_avg_pool1d(h.transpose(1, 2), self.num_tokens).transpose(1, 2))


@ENCODERS.register("demo_gru", options=GruOptions)
def demo_gru(opts: GruOptions, spec: EncoderSpec) -> nn.Module:
    return GruEncoder(opts, spec)
