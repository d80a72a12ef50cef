"""Encoder registry. Every encoder maps ``[N, leads, samples]`` to ``[N, num_tokens, out_dim]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ecg_bench.registry import Registry


@dataclass(frozen=True)
class EncoderSpec:
    """The dimensions an encoder is built for; passed explicitly, never read from globals."""

    in_leads: int
    """Input channels (12 for the raw signal)."""
    seq_len: int
    """Samples per segment."""
    out_dim: int
    """Width of each output token."""
    num_tokens: int
    """Output tokens per ECG (ignored by encoders whose token count follows from seq_len)."""
    patch_size: int = 50
    """Samples per patch for patch-based encoders."""
    fs: float = 250.0
    """Sampling rate (Hz) of the input, for encoders with physical frequency or time bands."""
    tokenizer: str = ""
    """ECG-Byte tokenizer JSON, for encoders that read ECG-Byte tokens (signal2vec)."""
    weights: str = ""
    """Pretrained weights file, for encoders that need one (signal2vec: the Signal2Vec .safetensors)."""


ENCODERS: Registry[Callable[[EncoderSpec], nn.Module]] = Registry("encoder")


def build_encoder(name: str, spec: EncoderSpec) -> nn.Module:
    """Build encoder ``name``; the module exposes ``out_dim`` and ``num_tokens`` attributes."""
    enc = ENCODERS.get(name)(spec)
    for attr in ("out_dim", "num_tokens"):
        if not hasattr(enc, attr):
            raise TypeError(f"encoder {name!r} must set attribute {attr!r}")
    return enc
