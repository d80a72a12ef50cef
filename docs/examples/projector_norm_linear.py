"""A projector: LayerNorm, then one linear layer to the LLM's hidden size."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ecg_bench.config import ProjectorOptions
from ecg_bench.models.projection import PROJECTORS


@dataclass
class NormLinearOptions(ProjectorOptions):
    """LayerNorm over the encoder features, then a linear layer."""

    eps: float = 1e-5
    """LayerNorm epsilon."""

    def problems(self) -> list[str]:
        return [f"eps must be > 0, got {self.eps}"] if not self.eps > 0 else []


@PROJECTORS.register("norm_linear", options=NormLinearOptions)
def norm_linear(opts: NormLinearOptions, in_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(in_dim, eps=opts.eps), nn.Linear(in_dim, out_dim))
