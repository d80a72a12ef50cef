"""The ELM base class, the ONE builder every family goes through, and the ``ELMS`` registry.

``build_elm(cfg, seq_len, in_leads, fs)`` does what every family shares, in this order:

1. load the LLM and its tokenizer (``model.llm``), give it a chat template and a pad token, add the
   ``<ecg>`` placeholder token;
2. let the family grow the LLM before adapters are added (the token ELM adds its ECG vocabulary);
3. LoRA adapters or full fine-tuning (``model.lora`` / ``model.full_finetune``);
4. let the family assemble its ELM (encoder + projector, or the ECG vocabulary) and its processor
   (``processors.Processor``: messages + ECGs -> model inputs), which callers use without asking the family.

``elm.manifest()`` (family, input dimensions, vocabulary) is what a checkpoint saves as ``elm.json`` so that
``ecg_bench.inference.from_pretrained`` rebuilds the ELM from the checkpoint alone.

A family registers a class with those two hooks (``ElmFamily``); an unknown family name lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import ELMOptions, ModelConfig, describe_options, to_dict
from ecg_bench.errors import ConfigError
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.chat import ECG_PLACEHOLDER, add_ecg_placeholder, ensure_chat_template
from ecg_bench.models.elm.processors import IGNORE_INDEX, Processor
from ecg_bench.models.llm import count_params, load_llm, prepare_llm
from ecg_bench.registry import Registry

log = get_logger(__name__)


class ELM(nn.Module):
    """An LLM reading ECGs. Families differ only in ``inputs_embeds`` (how the ECG reaches the LLM) and in the
    modules they add (``trainable_modules``); loss and greedy generation are shared.

    ``ecg`` inputs, where a family reads them, are flat over all ECGs of a batch, in row order.
    """

    def __init__(self, llm: nn.Module):
        super().__init__()
        self.llm = llm
        self.family: str = ""
        """The ELM family name it was built as (``model.elm.type``; set by ``build_elm``)."""
        self.family_options: dict = {}
        """``model.elm`` as JSON (its ``type`` and options; set by ``build_elm``)."""
        self.input_dims: InputDims | None = None
        """What one ECG looks like to the model (set by ``build_elm``)."""
        self.vocab: dict | None = None
        """The LLM vocabulary it was built with: ``<ecg>`` placeholder id and size (set by ``build_elm``)."""

    # -------------------------------------------------------------- pieces
    @property
    def base_llm(self) -> nn.Module:
        """The transformers model under any PEFT wrapper."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def inputs_embeds(self, input_ids: torch.Tensor, ecg: torch.Tensor | None) -> torch.Tensor:
        """The LLM's input embeddings for ``input_ids`` (plus ``ecg`` where the family reads it)."""
        return self.base_llm.get_input_embeddings()(input_ids)

    # -------------------------------------------------------------- training
    def forward(self, input_ids, attention_mask, labels, ecg=None, position_ids=None) -> tuple[torch.Tensor, int]:
        """Return ``(sum of token losses, number of supervised tokens)``.

        The LM head runs only on supervised positions: on a 49k vocabulary that is a large share of
        the step on CPU. Summed (not averaged) so gradient accumulation can divide by the token
        count of the whole accumulation window.

        With ``position_ids`` (packed rows, ``processors.pack_batch``) no attention mask is passed: transformers
        reads the restarts of the position ids as sample boundaries and builds a block-diagonal causal mask
        (SDPA, eager, flex) or variable-length attention (flash-attention), so no sample attends to another.
        """
        embeds = self.inputs_embeds(input_ids, ecg)
        decoder = self.base_llm.get_decoder()
        if position_ids is not None:  # (use_cache off: transformers looks for packed rows only without a cache)
            hidden = decoder(inputs_embeds=embeds, position_ids=position_ids, use_cache=False).last_hidden_state
        else:
            hidden = decoder(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        target = labels[:, 1:]
        keep = target != IGNORE_INDEX
        logits = self.base_llm.get_output_embeddings()(hidden[:, :-1][keep])
        cap = getattr(self.base_llm.config, "final_logit_softcapping", None)
        if cap:  # Gemma 2 caps its logits; skipping it would train a different model
            logits = torch.tanh(logits / cap) * cap
        loss = F.cross_entropy(logits.float(), target[keep], reduction="sum")
        return loss, int(keep.sum())

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(
        self, input_ids, attention_mask, ecg=None, max_new_tokens: int = 16, stop_token_ids=(), pad_token_id: int = 0
    ) -> list[list[int]]:
        """Greedy decoding from left-padded prompts; returns the new token ids of each row, stop token cut."""
        embeds = self.inputs_embeds(input_ids, ecg)
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=list(stop_token_ids) or None,
            pad_token_id=pad_token_id,
        )
        stops = set(stop_token_ids)
        result = []
        for row in out.tolist():
            ids = []
            for t in row:
                if t in stops:
                    break
                ids.append(t)
            result.append(ids)
        return result

    # -------------------------------------------------------------- what a checkpoint holds
    def trainable_modules(self) -> dict[str, nn.Module]:
        """The non-LLM modules that hold trained weights (saved as ``<name>.safetensors``)."""
        return {}

    def save_extra(self, folder: Path) -> None:
        """Write the files besides weights that rebuild this ELM (tokenizers, vocabularies) into a checkpoint."""

    def check_extra(self, folder: Path) -> None:
        """Refuse a checkpoint folder this ELM cannot load (raise DataError naming the file)."""

    def manifest(self) -> dict:
        """What a checkpoint needs besides the config to rebuild this ELM without its data (``elm.json``):
        the family (``model.elm.type`` and its options), the input dimensions, and the vocabulary the added tokens got
        (checked on load)."""
        dims = self.input_dims
        return {"version": 1, "family": self.family, "options": self.family_options,
                "input": None if dims is None else {"seq_len": dims.seq_len, "in_leads": dims.in_leads, "fs": dims.fs},
                "vocab": self.vocab}  # fmt: skip


@dataclass(frozen=True)
class InputDims:
    """What one ECG looks like to the model: a ``[in_leads, seq_len]`` segment at ``fs`` Hz (from the config), made
    into ``shape`` inputs of ``kind`` by the representation (``Representation.output``)."""

    seq_len: int
    in_leads: int = 12
    fs: float = 250.0
    kind: str = "signal"
    """Kind of the representation's output: signal ([leads, L]) or image ([3, H, W] pixel values 0-255)."""
    shape: tuple[int, ...] = ()
    """Shape of one representation output (empty = ``(in_leads, seq_len)``)."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.shape) or (self.in_leads, self.seq_len)


class ElmFamily:
    """How one family is assembled around the LLM that ``build_elm`` loads. Registered in ``ELMS``."""

    def grow_llm(self, cfg: ModelConfig, llm: nn.Module, tokenizer) -> None:
        """Change the LLM before adapters are added (e.g. new vocabulary rows). Default: nothing."""

    def input_problem(self, cfg: ModelConfig, kind: str) -> str | None:
        """Why this family (with ``cfg``'s encoder) cannot read ``kind`` representations; None when it can."""
        return None if kind == "signal" else f"ELM family {cfg.elm.type!r} reads signal representations, not {kind!r} ones"

    def assemble(self, cfg: ModelConfig, llm: nn.Module, tokenizer, dims: InputDims) -> tuple[ELM, Processor]:
        """The family's ELM and processor around the prepared (LoRA-wrapped or unfrozen) ``llm``."""
        raise NotImplementedError

    def card_rows(self, cfg: ModelConfig) -> list[tuple[str, str]]:
        """``(label, text)`` rows describing the family's own modules in a model card (the class docstring first)."""
        doc = " ".join((type(self).__doc__ or "").split()).replace("``", "`")  # Markdown code spans
        return [("ELM family", f"{describe_options(cfg.elm)}: {doc}")]


ELMS: Registry[type[ElmFamily]] = Registry("elm", options=ELMOptions, package="ecg_bench.models.elm")


def input_problem(cfg: ModelConfig, kind: str) -> str | None:
    """Why ``cfg``'s ELM family and encoder cannot read representations of ``kind`` (None when they can)."""
    return ELMS.get(cfg.elm.type)().input_problem(cfg, kind)


def build_elm(cfg: ModelConfig, seq_len: int, in_leads: int = 12, fs: float = 250.0, kind: str = "signal",
              shape: tuple[int, ...] = ()) -> tuple[ELM, Processor]:  # fmt: skip
    """Build the ELM family ``cfg.elm`` for ``[in_leads, seq_len]`` segments sampled at ``fs`` Hz, which the
    representation makes into ``shape`` inputs of ``kind`` (default: the signal itself), and its processor.

    An unknown family name lists the valid ones; a family or encoder that cannot read ``kind`` is refused before
    the LLM is loaded. Dimensions are passed in, never read from globals; component options come from ``cfg``
    (``cfg.model.encoder`` for the encoder families).
    """
    family = ELMS.get(cfg.elm.type)()
    problem = family.input_problem(cfg, kind)
    if problem:
        raise ConfigError([problem])
    llm, tok = load_llm(cfg.llm)
    ensure_chat_template(tok)
    add_ecg_placeholder(tok)
    family.grow_llm(cfg, llm, tok)
    llm = prepare_llm(llm, cfg)
    dims = InputDims(int(seq_len), int(in_leads), float(fs), kind, tuple(int(d) for d in shape))
    elm, processor = family.assemble(cfg, llm, tok, dims)
    elm.family, elm.family_options, elm.input_dims = cfg.elm.type, to_dict(cfg.elm), dims
    elm.vocab = {"placeholder": ECG_PLACEHOLDER, "placeholder_id": int(add_ecg_placeholder(tok)), "size": len(tok)}
    log.info("built %s ELM (%s): %.2fM trainable of %.1fM parameters", cfg.elm.type, processor.describe(),
             count_params(elm, True) / 1e6, count_params(elm) / 1e6)  # fmt: skip
    return elm, processor
