"""``random``: a frozen, randomly initialised convolutional encoder, as a baseline for every representation.

Random encoders have matched pretrained ones in linear evaluation of ECG and image features; this one
lets the benchmark ask whether that holds for ELMs (only the projector and the LLM adapters learn).

Any ``[N, C, L]`` (signal) or ``[N, C, H, W]`` (image, stacked) input: each sample is z-scored over all
its values (so mV and 0-255 pixels look alike; an all-zero input stays zero), then ``depth`` stride-2
convolutions (1-D or 2-D after the input's shape) with GELU, average-pooled to ``num_tokens`` tokens along
the flattened positions, and a random linear map to ``out_dim``, each token layer-normalised.

The weights are drawn from a ``torch.Generator`` seeded with ``seed`` and held as buffers, not parameters:
nothing can train them (whatever ``model.encoder.freeze`` says), and a checkpoint rebuilds them from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions
from ecg_bench.errors import ConfigError, ShapeError
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec


@dataclass
class RandomEncoderOptions(EncoderOptions):
    """Frozen, randomly initialised convolutions (seeded): a baseline encoder for every representation."""

    dim: int = 128
    """Width of each output token."""
    num_tokens: int = 4
    """Output tokens per ECG."""
    width: int = 128
    """Channels of every convolution."""
    depth: int = 4
    """Number of stride-2 convolutions."""
    seed: int = 0
    """Seed of the random weights (the same seed gives the same encoder)."""

    def problems(self) -> list[str]:
        p = []
        if not (isinstance(self.dim, int) and self.dim >= 1):
            p.append(f"dim must be >= 1, got {self.dim!r}")
        if not (isinstance(self.num_tokens, int) and self.num_tokens >= 1):
            p.append(f"num_tokens must be >= 1, got {self.num_tokens!r}")
        if not (isinstance(self.width, int) and 1 <= self.width <= 4096):
            p.append(f"width must be an integer in [1, 4096], got {self.width!r}")
        if not (isinstance(self.depth, int) and 1 <= self.depth <= 12):
            p.append(f"depth must be an integer in [1, 12], got {self.depth!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            p.append(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        return p

    def check(self) -> None:
        """Raise ConfigError listing the problems (for options built in Python, not through the config)."""
        p = self.problems()
        if p:
            raise ConfigError([f"random encoder: {m}" for m in p])


class RandomEncoder(nn.Module):
    """Frozen random convolutions: ``[N, *input_shape] -> [N, num_tokens, out_dim]``."""

    def __init__(self, spec: EncoderSpec, options: RandomEncoderOptions | None = None):
        super().__init__()
        o = options or RandomEncoderOptions()
        o.check()
        self.in_shape = tuple(spec.shape)
        if len(self.in_shape) not in (2, 3):
            raise ShapeError("random encoder input", self.in_shape, "[channels, L] or [channels, H, W]")
        self.dims = len(self.in_shape) - 1
        self.num_tokens, self.out_dim = spec.num_tokens, spec.out_dim
        gen = torch.Generator().manual_seed(o.seed)
        k = 7 if self.dims == 1 else 3
        c_in = self.in_shape[0]
        self.kernel = k
        for i in range(o.depth):
            fan_in = c_in * k**self.dims
            w = torch.randn((o.width, c_in) + (k,) * self.dims, generator=gen) * math.sqrt(2.0 / fan_in)  # He init
            self.register_buffer(f"conv{i}", w)
            c_in = o.width
        self.depth = o.depth
        self.register_buffer("proj", torch.randn(o.width, spec.out_dim, generator=gen) / math.sqrt(o.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError("random encoder input", x.shape, f"[N, {', '.join(map(str, self.in_shape))}]")
        h = x.to(self.proj.dtype)
        flat = h.flatten(1)
        h = (h - flat.mean(1).view(-1, *[1] * (h.ndim - 1))) / (flat.std(1).view(-1, *[1] * (h.ndim - 1)) + 1e-6)
        conv = F.conv1d if self.dims == 1 else F.conv2d
        for i in range(self.depth):
            h = F.gelu(conv(h, getattr(self, f"conv{i}"), stride=2, padding=self.kernel // 2))
        tokens = F.adaptive_avg_pool1d(h.flatten(2), self.num_tokens).transpose(1, 2)  # [N, num_tokens, width]
        return F.layer_norm(tokens @ self.proj, (self.out_dim,))


@ENCODERS.register("random", options=RandomEncoderOptions)
def random_encoder(opts: RandomEncoderOptions, spec: EncoderSpec) -> nn.Module:
    return RandomEncoder(spec, opts)


random_encoder.input_kinds = ("signal", "image")
