"""The one place where ECG embeddings enter the LLM: written into the input embeddings at placeholder ids.

Every encoder-based ELM (and the encoder-free one) goes through ``PlaceholderFusion``. The placeholder id
is never looked up in the embedding table (it may lie past the vocabulary), so adding the placeholder
token never resizes the LLM.
"""

from __future__ import annotations

import torch
from torch import nn

from ecg_bench.errors import ShapeError


class PlaceholderFusion(nn.Module):
    """``inputs_embeds = embed(ids)`` with rows at ``ids == placeholder_id`` replaced, in order, by ECG embeddings."""

    def __init__(self, placeholder_id: int):
        super().__init__()
        self.placeholder_id = placeholder_id

    def forward(self, input_ids: torch.Tensor, embed_tokens: nn.Module, ecg_embeds: torch.Tensor | None) -> torch.Tensor:
        """``ecg_embeds`` is ``[B, K, D]`` (K placeholders in every row) or flat ``[P, D]`` in row-major order.

        Placeholders are found by value, so left padding, right padding and several ECGs per sample
        all work; the count must match exactly.
        """
        mask = input_ids == self.placeholder_id
        embeds = embed_tokens(input_ids.masked_fill(mask, 0))
        n = int(mask.sum())
        if ecg_embeds is None:
            if n:
                raise ShapeError("ECG embeddings", (0,), f"{n} rows for the {n} placeholder tokens in the batch")
            return embeds
        flat = ecg_embeds.reshape(-1, ecg_embeds.shape[-1])
        if flat.shape[0] != n or flat.shape[-1] != embeds.shape[-1]:
            raise ShapeError(
                "ECG embeddings", tuple(ecg_embeds.shape), f"{n} rows (one per placeholder) of width {embeds.shape[-1]}"
            )
        return embeds.masked_scatter(mask.unsqueeze(-1), flat.to(embeds.dtype))
