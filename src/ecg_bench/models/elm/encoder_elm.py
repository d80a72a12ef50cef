"""The encoder ELMs: an ECG encoder and a projector write ECG embeddings at the ``<ecg>`` placeholders.

- ``llava``: ``model.encoder`` -> projector -> placeholder embeddings -> LLM.
- ``encoder_free``: raw-signal patches (the ``patch`` encoder) -> projector -> placeholder embeddings -> LLM.

Both are ``EncoderELM`` with a ``PlaceholderProcessor``; they differ only in the encoder they are built with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ecg_bench.config import ELMOptions, EncoderOptions, ModelConfig, choice, describe_options, to_dict
from ecg_bench.models.chat import ChatFormatter, add_ecg_placeholder
from ecg_bench.models.elm.base import ELM, ELMS, ElmFamily, InputDims
from ecg_bench.models.elm.processors import PlaceholderProcessor
from ecg_bench.models.encoders import build_encoder, input_kind_problem
from ecg_bench.models.encoders.base import encoder_spec
from ecg_bench.models.fusion import PlaceholderFusion
from ecg_bench.models.projection import build_projector


class EncoderELM(ELM):
    """LLM + encoder + projector. ``ecg`` inputs are flat ``[num_ecgs_in_batch, *representation shape]``."""

    def __init__(self, llm: nn.Module, encoder: nn.Module, projector: nn.Module, placeholder_id: int, train_encoder: bool = True):
        super().__init__(llm)
        self.encoder, self.projector = encoder, projector
        self.fusion = PlaceholderFusion(placeholder_id)
        self.tokens_per_ecg: int = encoder.num_tokens
        for p in encoder.parameters():
            p.requires_grad_(train_encoder)

    def ecg_embeddings(self, ecg: torch.Tensor) -> torch.Tensor:
        """``[N, *representation shape] -> [N, tokens_per_ecg, hidden]``."""
        return self.projector(self.encoder(ecg))

    def inputs_embeds(self, input_ids: torch.Tensor, ecg: torch.Tensor | None) -> torch.Tensor:
        embed = self.base_llm.get_input_embeddings()
        ecg_embeds = None if ecg is None else self.ecg_embeddings(ecg.to(embed.weight.device))
        return self.fusion(input_ids, embed, ecg_embeds)

    def trainable_modules(self) -> dict[str, nn.Module]:
        mods = {"projector": self.projector}
        if any(p.requires_grad for p in self.encoder.parameters()):
            mods["encoder"] = self.encoder
        return mods

    def save_extra(self, folder: Path) -> None:
        """Files the encoder is built from (e.g. Signal2Vec's tokenizer and vectors), so a checkpoint stands alone."""
        if hasattr(self.encoder, "save_extra"):
            self.encoder.save_extra(folder)


class EncoderFamily(ElmFamily):
    """Encoder + projector around the LLM; the encoder is ``model.encoder`` unless the family fixes it."""

    def encoder_options(self, cfg: ModelConfig) -> EncoderOptions:
        return cfg.encoder

    def input_problem(self, cfg: ModelConfig, kind: str) -> str | None:
        return input_kind_problem(self.encoder_options(cfg).type, kind)

    def assemble(self, cfg: ModelConfig, llm: nn.Module, tokenizer, dims: InputDims) -> tuple[EncoderELM, PlaceholderProcessor]:
        opts = self.encoder_options(cfg)
        hidden = llm.get_input_embeddings().embedding_dim
        spec = encoder_spec(opts, dims.in_leads, dims.seq_len, dims.fs, input_kind=dims.kind, input_shape=dims.shape,
                            representation=to_dict(cfg.representation))  # fmt: skip
        encoder = build_encoder(opts, spec)
        projector = build_projector(cfg.projector, encoder.out_dim, hidden)
        elm = EncoderELM(llm, encoder, projector, add_ecg_placeholder(tokenizer), train_encoder=not opts.freeze)
        formatter = ChatFormatter(tokenizer, system_prompt=cfg.system_prompt or None, num_ecg_tokens=elm.tokens_per_ecg,
                                  max_length=cfg.max_length)  # fmt: skip
        return elm, PlaceholderProcessor(formatter, encoder_name=opts.type)

    def card_rows(self, cfg: ModelConfig) -> list[tuple[str, str]]:
        opts = self.encoder_options(cfg)
        state = "frozen" if opts.freeze else "trained"
        return [*super().card_rows(cfg), ("encoder", f"{describe_options(opts)}, {state}"),
                ("projector", f"{describe_options(cfg.projector)} -> the LLM's hidden size")]  # fmt: skip


@ELMS.register("llava")
class LlavaFamily(EncoderFamily):
    """LLaVA-style: ``model.encoder`` -> projector -> embeddings written at ``<ecg>`` placeholder tokens -> LLM."""


@dataclass
class EncoderFreeOptions(ELMOptions):
    """No ECG encoder: raw-signal patches go through the projector alone (model.encoder is not used)."""

    patch_size: int = 50
    """Samples per patch of the raw signal fed to the projector (the segment length must be a multiple)."""

    def problems(self) -> list[str]:
        return [f"patch_size must be >= 1, got {self.patch_size}"] if self.patch_size < 1 else []


@ELMS.register("encoder_free", options=EncoderFreeOptions)
class EncoderFreeFamily(EncoderFamily):
    """Encoder-free: raw-signal patches -> projector -> embeddings at ``<ecg>`` placeholder tokens -> LLM."""

    def encoder_options(self, cfg: ModelConfig) -> EncoderOptions:
        return choice(EncoderOptions, "patch", patch_size=cfg.elm.patch_size)
