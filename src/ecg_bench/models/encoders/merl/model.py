"""MERL (Liu et al., ICML 2024): ECG-report contrastive pretraining of the ResNet ECG tower, and zero-shot
classification by label prompts.

Facts from ``utils/utils_builder.py`` / ``utils_loss.py`` of github cheliu-computation/MERL-ICML2024:

- ECG side: ResNet feature map -> 1x1 conv to ``proj_dim`` (256) -> attention pooling (a CLS query with
  learned positions, 4 heads, output projection) -> the ECG embedding for CMA; the time-average of the same
  map through two bias-free linear layers, each followed by dropout 0.1, gives two views for UMA.
- Text side: any Hugging Face text encoder (MERL: ncbi/MedCPT-Query-Encoder), pooled output (or the first
  token), -> Linear(hidden, 256) -> GELU -> Linear(256, 256). The first ``text_frozen_layers`` layers stay frozen.
- Loss: ``CMA + UMA``, each the symmetric InfoNCE ``CE(s) + CE(s^T)`` of cosine similarities / 0.07.
- Zero-shot: cosine similarity of the ECG embedding with each class prompt's text embedding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.errors import DataError
from ecg_bench.models.encoders.merl.resnet import ResNet1d

TEMPERATURE = 0.07


def clip_loss(x: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Symmetric InfoNCE of row-paired ``x``, ``y`` ``[B, D]`` (cosine similarity / temperature), as MERL: a sum."""
    sim = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / temperature
    labels = torch.arange(x.shape[0], device=x.device)
    return F.cross_entropy(sim, labels) + F.cross_entropy(sim.T, labels)


class AttentionPool(nn.Module):
    """A learned CLS query attends over the time steps (with learned positions); MERL's AttentionPool2d."""

    def __init__(self, steps: int, dim: int, heads: int = 4):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, steps + 1, dim) / dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.out = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[B, dim, T] -> [B, dim]``."""
        x = torch.cat([self.cls.expand(h.shape[0], -1, -1), h.transpose(1, 2)], 1) + self.pos
        pooled, _ = self.attn(x[:, :1], x, x, need_weights=False)
        return self.out(pooled[:, 0])


def load_text_tower(name: str):
    """``(model, tokenizer)`` of a Hugging Face text encoder by hub id or local folder."""
    from transformers import AutoModel, AutoTokenizer

    from ecg_bench.safe_files import safetensors_only

    kw = safetensors_only(name, f"text model {name!r}")
    try:
        return AutoModel.from_pretrained(name, **kw), AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        where = "folder" if Path(name).exists() else "hub id (offline? set it to a local folder)"
        raise DataError(f"text model {name!r} ({where}) could not be loaded: {e}") from None


TEXT_POOLINGS = ("pooler", "cls", "mean")


def text_features(model: nn.Module, tokenizer, texts: list[str], max_len: int, device: torch.device,
                  pooling: str = "pooler") -> torch.Tensor:  # fmt: skip
    """``[B, hidden]`` of a Hugging Face text encoder for ``texts``: ``pooler`` its pooled output where it has one (else
    the first token; MERL), ``cls`` the last layer's first token (MedCPT's documented embedding), ``mean`` the mean of
    the last layer's tokens under the attention mask."""
    tok = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device)
    out = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
    pooled = getattr(out, "pooler_output", None)
    if pooling == "pooler" and pooled is not None:
        return pooled
    if pooling == "mean":
        mask = tok["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
    return out.last_hidden_state[:, 0]


class Merl(nn.Module):
    """ECG tower + text tower + projections; ``losses(ecg, reports)`` gives CMA, UMA and their sum."""

    def __init__(self, ecg: ResNet1d, text_model: nn.Module, tokenizer, proj_dim: int = 256, proj_hidden: int = 256,
                 text_frozen_layers: int = 6, max_text_len: int = 128):  # fmt: skip
        super().__init__()
        self.ecg, self.text, self.tokenizer, self.max_text_len = ecg, text_model, tokenizer, max_text_len
        steps = -(-ecg.seq_len // 16)
        self.downconv = nn.Conv1d(ecg.channels, proj_dim, 1)
        self.pool = AttentionPool(steps, proj_dim)
        self.uma1, self.uma2 = nn.Linear(proj_dim, proj_dim, bias=False), nn.Linear(proj_dim, proj_dim, bias=False)
        self.dropout = nn.Dropout(0.1)
        hidden = text_model.config.hidden_size
        self.text_proj = nn.Sequential(nn.Linear(hidden, proj_hidden), nn.GELU(), nn.Linear(proj_hidden, proj_dim))
        freeze_text_layers(text_model, text_frozen_layers)

    def ecg_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.downconv(self.ecg.features(x))

    def ecg_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The ECG's embedding in the shared space, ``[B, proj_dim]`` (not normalised)."""
        return self.pool(self.ecg_maps(x))

    def text_embedding(self, texts: list[str]) -> torch.Tensor:
        return self.text_proj(text_features(self.text, self.tokenizer, texts, self.max_text_len, self.text_proj[0].weight.device))

    def losses(self, x: torch.Tensor, reports: list[str]) -> dict[str, torch.Tensor]:
        maps = self.ecg_maps(x)
        cma = clip_loss(self.pool(maps), self.text_embedding(reports))
        mean = maps.mean(-1)
        uma = clip_loss(self.dropout(self.uma1(mean)), self.dropout(self.uma2(mean)))
        return {"loss": cma + uma, "cma": cma, "uma": uma}

    @torch.no_grad()
    def zero_shot(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """``[B, K]`` cosine similarity of each ECG with each class prompt (argmax = predicted class)."""
        self.eval()
        return F.normalize(self.ecg_embedding(x), dim=-1) @ F.normalize(self.text_embedding(prompts), dim=-1).T


def freeze_text_layers(model: nn.Module, k: int) -> None:
    """Freeze the embeddings and the first ``k`` transformer layers (BERT-like ``encoder.layer``; all if unknown)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        model.requires_grad_(k <= 0)
        return
    if k > 0 and hasattr(model, "embeddings"):
        model.embeddings.requires_grad_(False)
    for layer in list(layers)[:k]:
        layer.requires_grad_(False)
