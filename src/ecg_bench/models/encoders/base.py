"""Encoder registry. Every encoder maps ``[N, *input_shape]`` (the representation's output, e.g. ``[N, leads, samples]``
or ``[N, 3, H, W]`` images) to ``[N, num_tokens, out_dim]``.

A builder takes the encoder's options dataclass (``model.encoder``) and the ``EncoderSpec``
(``builder(opts, spec)``). It declares the representation kinds it reads in
``input_kinds`` (default: signal only), checked by ``build_encoder`` and ``input_kind_problem``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ecg_bench.config import EncoderOptions
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
    representation: dict = field(default_factory=dict)
    """The run's representation options (``model.representation`` as JSON, with ``type``), checked against the
    preprocessing contract of pretrained weights that read a drawn picture (empty = not known: not checked)."""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape) or (self.in_leads, self.seq_len)


ENCODERS: Registry[Callable[[Any, EncoderSpec], nn.Module]] = Registry("encoder", options=EncoderOptions, package="ecg_bench.models.encoders")
"""``builder(options, spec) -> nn.Module``: ``options`` is the encoder's options dataclass (``model.encoder``),
``spec`` the input dimensions (with the options' sizes and files copied in)."""


def encoder_spec(opts: Any, in_leads: int, seq_len: int, fs: float, input_kind: str = "signal",
                 input_shape: tuple[int, ...] = (), representation: dict | None = None) -> EncoderSpec:  # fmt: skip
    """The EncoderSpec of input ``[in_leads, seq_len]`` at ``fs`` Hz with the sizes and files of ``opts``; the
    representation (options ``representation``) turns it into ``input_shape`` inputs of ``input_kind`` (default: the
    signal itself)."""
    return EncoderSpec(in_leads=in_leads, seq_len=seq_len, out_dim=getattr(opts, "dim", 128), num_tokens=getattr(opts, "num_tokens", 4),
                       patch_size=getattr(opts, "patch_size", 50), fs=fs, tokenizer=getattr(opts, "tokenizer", ""),
                       weights=getattr(opts, "weights", ""), input_kind=input_kind,
                       input_shape=tuple(int(d) for d in input_shape), representation=dict(representation or {}))  # fmt: skip


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


def build_encoder(opts: Any, spec: EncoderSpec) -> nn.Module:
    """Build the encoder ``opts`` chooses (``opts.type``) for ``spec``; the module exposes ``out_dim`` and
    ``num_tokens`` attributes. An encoder that cannot read ``spec.input_kind`` is refused, naming the ones that can."""
    name = opts.type
    problem = input_kind_problem(name, spec.input_kind)
    if problem:
        raise ConfigError([problem])
    enc = ENCODERS.get(name)(opts, spec)
    for attr in ("out_dim", "num_tokens"):
        if not hasattr(enc, attr):
            raise TypeError(f"encoder {name!r} must set attribute {attr!r}")
    return enc
