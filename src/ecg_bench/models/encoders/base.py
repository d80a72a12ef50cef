"""Encoder registry. Every encoder maps ``[N, *input_shape]`` (the representation's output, e.g. ``[N, leads, samples]``
or ``[N, 3, H, W]`` images) to ``[N, num_tokens, out_dim]``.

A builder takes the ``EncoderSpec`` and, where the encoder has options, its options dataclass
(``builder(spec, options)``; ``None`` = the defaults). It declares the representation kinds it reads in
``input_kinds`` (default: signal only), checked by ``build_encoder`` and ``input_kind_problem``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ecg_bench.errors import ConfigError
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
    input_kind: str = "signal"
    """Kind of the representation's output (signal, image), from ``Representation.output``."""
    input_shape: tuple[int, ...] = ()
    """Shape of one input, from ``Representation.output`` (empty = ``(in_leads, seq_len)``, the signal)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape) or (self.in_leads, self.seq_len)


ENCODERS: Registry[Callable[[EncoderSpec], nn.Module]] = Registry("encoder")


def input_kinds(name: str) -> tuple[str, ...]:
    """The representation kinds encoder ``name`` reads."""
    return tuple(getattr(ENCODERS.get(name), "input_kinds", ("signal",)))


def input_kind_problem(name: str, kind: str) -> str | None:
    """Why encoder ``name`` cannot read ``kind`` inputs (None when it can)."""
    kinds = input_kinds(name)
    if kind in kinds:
        return None
    fits = [n for n in ENCODERS.names() if kind in getattr(ENCODERS.get(n), "input_kinds", ("signal",))]
    return (f"encoder {name!r} reads {' or '.join(kinds)} representations, not {kind!r} ones (model.representation); "
            f"encoders that read {kind}: {', '.join(fits) or '(none)'}")  # fmt: skip


def build_encoder(name: str, spec: EncoderSpec, options: Any = None) -> nn.Module:
    """Build encoder ``name`` (with its ``options`` dataclass, None = defaults); the module exposes ``out_dim`` and
    ``num_tokens`` attributes. An encoder that cannot read ``spec.input_kind`` is refused, naming the ones that can."""
    builder = ENCODERS.get(name)
    problem = input_kind_problem(name, spec.input_kind)
    if problem:
        raise ConfigError([problem])
    if options is None:
        enc = builder(spec)
    elif len(inspect.signature(builder).parameters) < 2:
        raise ConfigError([f"encoder {name!r} takes no options, got {type(options).__name__}"])
    else:
        enc = builder(spec, options)
    for attr in ("out_dim", "num_tokens"):
        if not hasattr(enc, attr):
            raise TypeError(f"encoder {name!r} must set attribute {attr!r}")
    return enc
