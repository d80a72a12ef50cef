"""A pretrainer: principal components of short single-lead windows of a store, saved as safetensors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ecg_bench.config import PretrainerOptions
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer


@dataclass
class LeadPcaOptions(PretrainerOptions):
    """Principal components of single-lead windows: weights for a patch encoder's first layer."""

    store: str = field(default="", metadata={"required": True})
    """Segment store folder."""
    out: str = field(default="", metadata={"required": True})
    """Output .safetensors file (a .json with the settings is written beside it)."""
    components: int = 8
    """Components kept."""
    window: int = 50
    """Samples per window."""
    num_samples: int = 256
    """Segments sampled from the store (0 = all)."""
    seed: int = 0
    """Seed of the segment sample."""

    def problems(self) -> list[str]:
        return [] if 1 <= self.components <= self.window else [f"need 1 <= components <= window, got {self.components}"]


def run(opts: LeadPcaOptions) -> str:
    store = SegmentStore(opts.store)
    if store.segment_len < opts.window:
        raise ConfigError([f"window {opts.window} is longer than the store's segments ({store.segment_len} samples)"])
    n = len(store) if opts.num_samples <= 0 else min(opts.num_samples, len(store))
    idx = np.sort(np.random.default_rng(opts.seed).choice(len(store), size=n, replace=False))
    x = store.signals(idx)[..., : store.segment_len // opts.window * opts.window]  # [n, 12, k * window]
    windows = torch.from_numpy(x.reshape(-1, opts.window)).double()
    mean = windows.mean(0)
    _, s, v = torch.linalg.svd(windows - mean, full_matrices=False)
    explained = float((s[: opts.components] ** 2).sum() / (s**2).sum())
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"components": v[: opts.components].float().contiguous(), "mean": mean.float()}, str(out))
    out.with_suffix(".json").write_text(json.dumps({"window": opts.window, "fs": store.fs, "explained": explained}))
    return f"{opts.components} components of {len(windows):,} windows explain {explained:.1%} of the variance -> {out}"


PRETRAINERS.register("lead_pca", options=LeadPcaOptions)(
    Pretrainer(LeadPcaOptions, run, "principal components of single-lead windows (example)")
)
