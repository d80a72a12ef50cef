"""Encoder registry. Every encoder maps ``[N, leads, samples]`` to ``[N, num_tokens, out_dim]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ecg_bench.config import EncoderOptions
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


ENCODERS: Registry[Callable[[Any, EncoderSpec], nn.Module]] = Registry("encoder", options=EncoderOptions)
"""``builder(options, spec) -> nn.Module``: ``options`` is the encoder's options dataclass (``model.encoder``),
``spec`` the input dimensions (with the options' sizes and files copied in)."""


def encoder_spec(opts: Any, in_leads: int, seq_len: int, fs: float) -> EncoderSpec:
    """The EncoderSpec of input ``[in_leads, seq_len]`` at ``fs`` Hz with the sizes and files of ``opts``."""
    return EncoderSpec(in_leads=in_leads, seq_len=seq_len, out_dim=getattr(opts, "dim", 128), num_tokens=getattr(opts, "num_tokens", 4),
                       patch_size=getattr(opts, "patch_size", 50), fs=fs, tokenizer=getattr(opts, "tokenizer", ""),
                       weights=getattr(opts, "weights", ""))  # fmt: skip


def build_encoder(opts: Any, spec: EncoderSpec) -> nn.Module:
    """Build the encoder ``opts`` chooses (``opts.type``) for ``spec``; the module exposes ``out_dim`` and
    ``num_tokens`` attributes."""
    name = opts.type
    enc = ENCODERS.get(name)(opts, spec)
    for attr in ("out_dim", "num_tokens"):
        if not hasattr(enc, attr):
            raise TypeError(f"encoder {name!r} must set attribute {attr!r}")
    return enc
