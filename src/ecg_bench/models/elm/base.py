"""The ELM base class, the ONE builder every family goes through, and the ``ELMS`` registry.

``build_elm(cfg, seq_len, in_leads, fs)`` does what every family shares, in this order:

1. load the LLM and its tokenizer (``model.llm``), give it a chat template and a pad token, add the
   ``<ecg>`` placeholder token;
2. let the family grow the LLM before adapters are added (the token ELM adds its ECG vocabulary);
3. LoRA adapters or full fine-tuning (``model.lora`` / ``model.full_finetune``);
4. let the family assemble its ELM (encoder + projector, or the ECG vocabulary) and its processor
   (``processors.Processor``: messages + ECGs -> model inputs), which callers use without asking the family.

A family registers a class with those two hooks (``ElmFamily``); an unknown family name lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import ELMOptions, ModelConfig
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.chat import add_ecg_placeholder, ensure_chat_template
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


@dataclass(frozen=True)
class InputDims:
    """What one ECG looks like to the model: ``[in_leads, seq_len]`` samples at ``fs`` Hz (from the config)."""

    seq_len: int
    in_leads: int = 12
    fs: float = 250.0


class ElmFamily:
    """How one family is assembled around the LLM that ``build_elm`` loads. Registered in ``ELMS``."""

    def grow_llm(self, cfg: ModelConfig, llm: nn.Module, tokenizer) -> None:
        """Change the LLM before adapters are added (e.g. new vocabulary rows). Default: nothing."""

    def assemble(self, cfg: ModelConfig, llm: nn.Module, tokenizer, dims: InputDims) -> tuple[ELM, Processor]:
        """The family's ELM and processor around the prepared (LoRA-wrapped or unfrozen) ``llm``."""
        raise NotImplementedError


ELMS: Registry[type[ElmFamily]] = Registry("elm", options=ELMOptions)


def build_elm(cfg: ModelConfig, seq_len: int, in_leads: int = 12, fs: float = 250.0) -> tuple[ELM, Processor]:
    """Build the ELM family ``cfg.elm`` for ``[in_leads, seq_len]`` inputs sampled at ``fs`` Hz, and its processor.

    An unknown family name lists the valid ones. Dimensions are passed in, never read from globals.
    """
    family = ELMS.get(cfg.elm.type)()
    llm, tok = load_llm(cfg.llm)
    ensure_chat_template(tok)
    add_ecg_placeholder(tok)
    family.grow_llm(cfg, llm, tok)
    llm = prepare_llm(llm, cfg)
    elm, processor = family.assemble(cfg, llm, tok, InputDims(int(seq_len), int(in_leads), float(fs)))
    log.info("built %s ELM (%s): %.2fM trainable of %.1fM parameters", cfg.elm.type, processor.describe(),
             count_params(elm, True) / 1e6, count_params(elm) / 1e6)  # fmt: skip
    return elm, processor
