"""Helpers shared by tests (imported by name; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from config_helpers import model_config


def make_tiny_elm(**model_overrides):
    """A fresh tiny ELM (2-layer random Llama, SmolLM2 tokenizer) for 500-sample segments at 250 Hz."""
    import torch

    from ecg_bench.models.elm import build_elm

    torch.manual_seed(0)
    cfg = model_config(**{"llm": "tiny", "num_ecg_tokens": 2, "encoder_dim": 32, **model_overrides})
    return build_elm(cfg, seq_len=500, fs=250.0)
