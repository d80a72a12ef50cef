"""Projectors from encoder features to the LLM's hidden size."""

from __future__ import annotations

from torch import nn


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """``linear`` or ``mlp`` (Linear-GELU-Linear, as LLaVA-1.5)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"unknown projector {kind!r}; valid: linear, mlp")
