"""An ELM family: LLaVA-style, with one learned scale on the ECG embeddings (started at init_scale)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ecg_bench.config import ELMOptions, ModelConfig
from ecg_bench.models.elm.base import ELMS, InputDims
from ecg_bench.models.elm.encoder_elm import EncoderELM, EncoderFamily
from ecg_bench.models.elm.processors import PlaceholderProcessor


@dataclass
class ScaledLlavaOptions(ELMOptions):
    """LLaVA-style with a learned scale on the ECG embeddings."""

    init_scale: float = 1.0
    """Starting value of the scale."""


class Scaled(nn.Module):
    """``inner(x) * scale``; saved with the projector (``projector.safetensors``)."""

    def __init__(self, inner: nn.Module, init: float):
        super().__init__()
        self.inner, self.scale = inner, nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale


@ELMS.register("scaled_llava", options=ScaledLlavaOptions)
class ScaledLlavaFamily(EncoderFamily):
    """LLaVA-style: model.encoder -> projector x a learned scale -> embeddings at <ecg> placeholder tokens -> LLM."""

    def assemble(self, cfg: ModelConfig, llm, tokenizer, dims: InputDims) -> tuple[EncoderELM, PlaceholderProcessor]:
        elm, processor = super().assemble(cfg, llm, tokenizer, dims)  # encoder, projector, placeholder processor
        elm.projector = Scaled(elm.projector, cfg.elm.init_scale)
        return elm, processor
