"""Parameter-free patching for encoder-free ELMs: the raw signal cut into patches of all leads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ecg_bench.errors import ShapeError
from ecg_bench.config import EncoderOptions
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec


class Patchify(nn.Module):
    """``[N, leads, L] -> [N, L // patch, leads * patch]``; the projector does all the learning."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        if spec.seq_len % spec.patch_size:
            raise ShapeError(
                "patch encoder segment", (spec.in_leads, spec.seq_len), f"samples divisible by patch_size={spec.patch_size}"
            )
        self.in_leads, self.patch = spec.in_leads, spec.patch_size
        self.num_tokens = spec.seq_len // spec.patch_size
        self.out_dim = spec.in_leads * spec.patch_size
        self.seq_len = spec.seq_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.in_leads, self.seq_len):
            raise ShapeError("patch encoder input", x.shape, f"[N, {self.in_leads}, {self.seq_len}]")
        n = x.shape[0]
        return x.reshape(n, self.in_leads, self.num_tokens, self.patch).permute(0, 2, 1, 3).reshape(n, self.num_tokens, -1)


@dataclass
class PatchOptions(EncoderOptions):
    """No encoder: the raw signal cut into patches across all leads (one token per patch)."""

    patch_size: int = 50
    """Samples per patch (the segment length must be a multiple)."""

    def problems(self) -> list[str]:
        return [f"patch_size must be >= 1, got {self.patch_size}"] if self.patch_size < 1 else []


@ENCODERS.register("patch", options=PatchOptions)
def patch(opts: PatchOptions, spec: EncoderSpec) -> nn.Module:
    return Patchify(spec)
