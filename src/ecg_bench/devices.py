"""What fine-tuning (``training.trainer``) and encoder pretraining (``models.encoders.pretrain_loop``) share: the
device and autocast dtype a setting names, and the learning-rate schedule (linear warmup, then cosine decay).
One copy of each, below both layers."""

from __future__ import annotations

import math

import torch

from ecg_bench.errors import ConfigError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """The device ``name`` (auto, cpu, cuda, cuda:N, mps) names; ConfigError naming the setting ``what`` when it is
    not a device or not available here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError([f"{what} {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps"]) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([f"{what}={name!r} but no CUDA device is available"])
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError([f"{what}={name!r} but there are {torch.cuda.device_count()} CUDA devices"])
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError([f"{what}={name!r} but MPS is not available"])
    return dev


def resolve_dtype(precision: str, device: torch.device, what: str = "train.precision") -> torch.dtype | None:
    """The autocast dtype of ``precision`` (fp32, bf16, auto = bf16 on a CUDA device that supports it) on
    ``device``, or None for plain fp32."""
    if precision == "fp32":
        return None
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and device.type == "cuda" and not bf16_ok:
        raise ConfigError([f"{what}='bf16' but {torch.cuda.get_device_name(device)} does not support bf16"])
    if precision == "auto":
        return torch.bfloat16 if bf16_ok else None
    return torch.bfloat16  # explicit bf16 on CPU: autocast supports it (slow on most CPUs)


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """The learning-rate factor at ``step``: linear warmup to 1 over ``warmup`` steps, then cosine decay to
    ``min_ratio`` at ``total`` (a pure function of the step, so a resumed run replays the schedule exactly)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
