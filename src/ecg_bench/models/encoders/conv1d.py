"""A small 1-D residual CNN trained from scratch: the default encoder of the embedded quickstart."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions
from ecg_bench.errors import ShapeError
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 7, stride=stride, padding=3)
        self.conv2 = nn.Conv1d(c_out, c_out, 7, padding=3)
        self.norm1 = nn.GroupNorm(8, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.skip = nn.Conv1d(c_in, c_out, 1, stride=stride) if (stride != 1 or c_in != c_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.gelu(h + self.skip(x))


class Conv1dEncoder(nn.Module):
    """Residual CNN (4 stages, stride 2 each) -> ``num_tokens`` tokens by average + max pooling over time.

    Average pooling over a window keeps rate-like features (how many beats), max pooling keeps
    event-like ones (a single wide QRS), so both are concatenated before the output projection.
    GroupNorm makes the features blind to absolute scale, so each lead's log RMS amplitude (mV) is
    added as well: amplitude is diagnostic (low voltage, hypertrophy).
    """

    def __init__(self, spec: EncoderSpec, widths: tuple[int, ...] = (32, 64, 96, 128)):
        super().__init__()
        self.in_leads, self.num_tokens, self.out_dim = spec.in_leads, spec.num_tokens, spec.out_dim
        self.stem = nn.Sequential(
            nn.Conv1d(spec.in_leads, widths[0], 15, stride=2, padding=7), nn.GroupNorm(8, widths[0]), nn.GELU()
        )
        chans = (widths[0],) + widths
        self.blocks = nn.Sequential(*[_Block(a, b, 2) for a, b in zip(chans[:-1], chans[1:])])
        self.out = nn.Linear(2 * widths[-1] + spec.in_leads, spec.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_leads:
            raise ShapeError("conv1d encoder input", x.shape, f"[N, {self.in_leads}, samples]")
        h = self.blocks(self.stem(x))  # [N, C, T]
        amp = torch.log(x.float().pow(2).mean(-1, keepdim=True).sqrt() + 1e-3).to(h.dtype)  # [N, leads, 1]
        pooled = torch.cat([F.adaptive_avg_pool1d(h, self.num_tokens), F.adaptive_max_pool1d(h, self.num_tokens),
                            amp.expand(-1, -1, self.num_tokens)], 1)  # fmt: skip
        return self.out(pooled.transpose(1, 2))  # [N, num_tokens, out_dim]


@dataclass
class Conv1dOptions(EncoderOptions):
    """Small residual 1-D CNN trained from scratch (the quickstart's encoder)."""

    dim: int = 128
    """Width of each output token."""
    num_tokens: int = 4
    """Output tokens per ECG (ECG embeddings written into the prompt)."""

    def problems(self) -> list[str]:
        return [f"{n} must be >= 1, got {getattr(self, n)}" for n in ("dim", "num_tokens") if getattr(self, n) < 1]


@ENCODERS.register("conv1d", options=Conv1dOptions)
def conv1d(opts: Conv1dOptions, spec: EncoderSpec) -> nn.Module:
    return Conv1dEncoder(spec)
