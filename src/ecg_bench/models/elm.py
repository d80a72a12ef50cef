"""ECG-language models: an LLM plus (optionally) an ECG encoder and a projector, joined by PlaceholderFusion.

Families live in the ``ELMS`` registry:

- ``llava``: ECG encoder -> projector -> placeholder embeddings -> LLM.
- ``encoder_free``: raw-signal patches -> projector -> placeholder embeddings -> LLM.
- ``ecg_byte``: ECG-Byte tokens added to the LLM's vocabulary, written into the prompt (``token_elm.py``).

``llava`` and ``encoder_free`` are the same ``ELM`` class; they differ only in the encoder they are built with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import ModelConfig
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.chat import ChatFormatter, add_ecg_placeholder, ensure_chat_template
from ecg_bench.models.encoders import EncoderSpec, build_encoder
from ecg_bench.models.fusion import PlaceholderFusion
from ecg_bench.models.llm import count_params, load_llm, prepare_llm
from ecg_bench.models.projection import build_projector
from ecg_bench.registry import Registry

log = get_logger(__name__)

IGNORE_INDEX = -100


class ELM(nn.Module):
    """LLM + optional encoder + projector. ``ecg`` inputs are flat ``[num_ecgs_in_batch, leads, samples]``."""

    def __init__(self, llm: nn.Module, encoder: nn.Module, projector: nn.Module, placeholder_id: int, train_encoder: bool = True):
        super().__init__()
        self.llm, self.encoder, self.projector = llm, encoder, projector
        self.fusion = PlaceholderFusion(placeholder_id)
        self.tokens_per_ecg: int = encoder.num_tokens
        for p in encoder.parameters():
            p.requires_grad_(train_encoder)

    # -------------------------------------------------------------- pieces
    @property
    def base_llm(self) -> nn.Module:
        """The transformers model under any PEFT wrapper."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def ecg_embeddings(self, ecg: torch.Tensor) -> torch.Tensor:
        """``[N, leads, L] -> [N, tokens_per_ecg, hidden]``."""
        return self.projector(self.encoder(ecg))

    def inputs_embeds(self, input_ids: torch.Tensor, ecg: torch.Tensor | None) -> torch.Tensor:
        embed = self.base_llm.get_input_embeddings()
        ecg_embeds = None if ecg is None else self.ecg_embeddings(ecg.to(embed.weight.device))
        return self.fusion(input_ids, embed, ecg_embeds)

    # -------------------------------------------------------------- training
    def forward(self, input_ids, attention_mask, labels, ecg=None) -> tuple[torch.Tensor, int]:
        """Return ``(sum of token losses, number of supervised tokens)``.

        The LM head runs only on supervised positions: on a 49k vocabulary that is a large share of
        the step on CPU. Summed (not averaged) so gradient accumulation can divide by the token
        count of the whole accumulation window.
        """
        embeds = self.inputs_embeds(input_ids, ecg)
        hidden = self.base_llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
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
        mods = {"projector": self.projector}
        if any(p.requires_grad for p in self.encoder.parameters()):
            mods["encoder"] = self.encoder
        return mods

    def save_extra(self, folder: Path) -> None:
        """Files the encoder is built from (e.g. Signal2Vec's tokenizer and vectors), so a checkpoint stands alone."""
        if hasattr(self.encoder, "save_extra"):
            self.encoder.save_extra(folder)


ElmBuilder = Callable[[ModelConfig, int, int, float], tuple[ELM, ChatFormatter]]
ELMS: Registry[ElmBuilder] = Registry("elm")


def _build(cfg: ModelConfig, seq_len: int, in_leads: int, fs: float, encoder_name: str) -> tuple[ELM, ChatFormatter]:
    llm, tok = load_llm(cfg.llm)
    ensure_chat_template(tok)
    placeholder_id = add_ecg_placeholder(tok)
    llm = prepare_llm(llm, cfg)
    hidden = llm.get_input_embeddings().embedding_dim
    spec = EncoderSpec(in_leads=in_leads, seq_len=seq_len, out_dim=cfg.encoder_dim, num_tokens=cfg.num_ecg_tokens,
                       patch_size=cfg.patch_size, fs=fs, tokenizer=cfg.tokenizer, weights=cfg.signal2vec)  # fmt: skip
    encoder = build_encoder(encoder_name, spec)
    projector = build_projector(cfg.projector, encoder.out_dim, hidden)
    elm = ELM(llm, encoder, projector, placeholder_id, train_encoder=cfg.train_encoder)
    formatter = ChatFormatter(
        tok, system_prompt=cfg.system_prompt or None, num_ecg_tokens=elm.tokens_per_ecg, max_length=cfg.max_length
    )
    log.info(
        "built %s ELM: encoder %s (%d tokens/ECG), %.2fM trainable of %.1fM parameters",
        cfg.elm,
        encoder_name,
        elm.tokens_per_ecg,
        count_params(elm, True) / 1e6,
        count_params(elm) / 1e6,
    )
    return elm, formatter


@ELMS.register("llava")
def llava(cfg: ModelConfig, seq_len: int, in_leads: int = 12, fs: float = 250.0) -> tuple[ELM, ChatFormatter]:
    return _build(cfg, seq_len, in_leads, fs, cfg.encoder)


@ELMS.register("encoder_free")
def encoder_free(cfg: ModelConfig, seq_len: int, in_leads: int = 12, fs: float = 250.0) -> tuple[ELM, ChatFormatter]:
    return _build(cfg, seq_len, in_leads, fs, "patch")


def build_elm(cfg: ModelConfig, seq_len: int, in_leads: int = 12, fs: float = 250.0) -> tuple[ELM, ChatFormatter]:
    """Build the ELM family ``cfg.elm`` for ``[in_leads, seq_len]`` inputs sampled at ``fs`` Hz.

    An unknown family name lists the valid ones. Dimensions are passed in, never read from globals.
    """
    return ELMS.get(cfg.elm)(cfg, seq_len, in_leads, fs)


@dataclass
class Batch:
    """A collated batch. ``ecg`` is flat over all ECGs of the batch, in row order, or None."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    ecg: torch.Tensor | None = None

    def to(self, device) -> "Batch":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(mv(self.input_ids), mv(self.attention_mask), mv(self.labels), mv(self.ecg))


def pad_batch(seqs: list[list[int]], pad_id: int, side: str, label_seqs: list[list[int]] | None = None) -> Batch:
    """Pad token lists to one length (right for training, left for generation)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long) if label_seqs is not None else None
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
        if labels is not None:
            labels[i, sl] = torch.tensor(label_seqs[i], dtype=torch.long)
    return Batch(ids, mask, labels)


from ecg_bench.models import token_elm as _token_elm  # noqa: E402,F401  (registers "ecg_byte"; imports ELM from here)
