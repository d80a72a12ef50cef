"""Signal <-> symbol string: min-max normalization, 26-level quantization, lead-by-lead flattening.

This follows the original ECG-Bench ECG-Byte (``BPESymbolic``): per segment, ``x' = (x - min) /
(max - min + eps)`` clipped to [0, 1], level ``q = min(floor(26 x'), 25)``, symbol ``'a' + q``, and the
``[leads, L]`` symbol array flattened row by row (lead I first, then lead II, ...). Reconstruction
takes the centre of the level's bin, ``(q + 0.5) / 26``, so the error is at most half a level
(``(max - min + eps) / 52``), well within one quantization step of the segment's range.

Choices (stored in every tokenizer file, see ``SymbolConfig``):

- ``scope="segment"`` (default, as the original): one min/max over all leads of the segment;
  ``scope="lead"``: one min/max per lead (finer levels for low-amplitude leads, 2 x leads numbers
  to keep instead of 2).
- ``clip_percentiles=(lo, hi)``: clip each segment (or lead) to its lo/hi percentiles before min-max
  (robust to spikes). Samples outside the percentile range are not reconstructed within one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ecg_bench.errors import ConfigError, DataError, ShapeError

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
NUM_LEVELS = len(ALPHABET)
_A = ord("a")


@dataclass(frozen=True)
class SymbolConfig:
    """How signals become symbols; saved with the tokenizer so encoding is reproducible."""

    scope: str = "segment"
    """'segment': one min/max per segment (original ECG-Byte); 'lead': one min/max per lead."""
    eps: float = 1e-6
    """Added to (max - min) so flat signals do not divide by zero (original: 1e-6)."""
    clip_percentiles: tuple[float, float] | None = None
    """Clip to these per-segment (or per-lead) percentiles before min-max; None = no clipping."""

    def __post_init__(self) -> None:
        problems = []
        if self.scope not in ("segment", "lead"):
            problems.append(f"symbols.scope must be 'segment' or 'lead', got {self.scope!r}")
        if not self.eps > 0:
            problems.append(f"symbols.eps must be > 0, got {self.eps!r}")
        if self.clip_percentiles is not None:
            lo, hi = self.clip_percentiles
            if not 0 <= lo < hi <= 100:
                problems.append(f"symbols.clip_percentiles must satisfy 0 <= lo < hi <= 100, got {self.clip_percentiles!r}")
        if problems:
            raise ConfigError(problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        clip = list(self.clip_percentiles) if self.clip_percentiles is not None else None
        return {"scope": self.scope, "eps": self.eps, "clip_percentiles": clip}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SymbolConfig":
        """Inverse of ``to_dict``; unknown keys are an error."""
        unknown = set(d) - {"scope", "eps", "clip_percentiles"}
        if unknown:
            raise ConfigError([f"symbols: unknown keys {sorted(unknown)}"])
        clip = d.get("clip_percentiles")
        return cls(scope=d.get("scope", "segment"), eps=float(d.get("eps", 1e-6)), clip_percentiles=tuple(clip) if clip else None)


@dataclass
class NormParams:
    """Per-segment normalization parameters needed to turn symbols back into millivolts.

    ``mins``/``maxs`` have shape ``[..., groups]``: groups = 1 (scope 'segment') or num_leads
    (scope 'lead'); a leading batch axis when returned for many segments.
    """

    mins: np.ndarray
    maxs: np.ndarray
    num_leads: int

    def __getitem__(self, i: int) -> "NormParams":
        """The parameters of segment ``i`` of a batch."""
        return NormParams(self.mins[i], self.maxs[i], self.num_leads)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (e.g. to keep beside encoded ids)."""
        return {"mins": np.asarray(self.mins).tolist(), "maxs": np.asarray(self.maxs).tolist(), "num_leads": self.num_leads}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NormParams":
        """Inverse of ``to_dict``."""
        return cls(np.asarray(d["mins"], np.float32), np.asarray(d["maxs"], np.float32), int(d["num_leads"]))


def _as_batch(signals: np.ndarray) -> np.ndarray:
    x = np.asarray(signals)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ShapeError("ECG signal(s)", x.shape, "[leads, L] or [n, leads, L] with leads, L > 0")
    if not np.isfinite(x).all():
        raise DataError("ECG signal contains NaN or Inf; fill or drop the segment before symbolizing")
    return x.astype(np.float32, copy=False)


def normalize(signals: np.ndarray, cfg: SymbolConfig) -> tuple[np.ndarray, NormParams]:
    """``[n, leads, L]`` (or ``[leads, L]``) -> values in [0, 1] of the same shape, plus the parameters."""
    x = _as_batch(signals)
    axes = (1, 2) if cfg.scope == "segment" else (2,)
    if cfg.clip_percentiles is not None:
        lo, hi = np.percentile(x, cfg.clip_percentiles, axis=axes, keepdims=True)
        x = np.clip(x, lo, hi)
    mn = x.min(axis=axes, keepdims=True)
    mx = x.max(axis=axes, keepdims=True)
    norm = np.clip((x - mn) / (mx - mn + np.float32(cfg.eps)), 0.0, 1.0)
    params = NormParams(mn.reshape(len(x), -1), mx.reshape(len(x), -1), x.shape[1])
    if np.ndim(signals) == 2:
        return norm[0], params[0]
    return norm, params


def quantize(normalized: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> levels 0..25 (uint8): ``min(floor(26 x), 25)``."""
    return np.minimum(np.floor(normalized * NUM_LEVELS), NUM_LEVELS - 1).astype(np.uint8)


def dequantize(levels: np.ndarray) -> np.ndarray:
    """Levels 0..25 -> the centre of each level's bin in [0, 1] (float32)."""
    return (levels.astype(np.float32) + np.float32(0.5)) / np.float32(NUM_LEVELS)


def denormalize(normalized: np.ndarray, params: NormParams, cfg: SymbolConfig) -> np.ndarray:
    """Inverse of ``normalize`` for one segment: ``[leads, L]`` in [0, 1] -> mV."""
    mn = np.asarray(params.mins, np.float32).reshape(-1, 1)
    mx = np.asarray(params.maxs, np.float32).reshape(-1, 1)
    if mn.shape[0] not in (1, normalized.shape[0]):
        raise ShapeError("normalization parameters", mn.shape, f"[1] or [{normalized.shape[0]}] (one per lead)")
    return normalized * (mx - mn + np.float32(cfg.eps)) + mn


def levels_to_str(levels: np.ndarray) -> str:
    """Levels 0..25 (any shape, flattened row-major = lead by lead) -> 'a'..'z' string."""
    return (np.ascontiguousarray(levels, dtype=np.uint8).ravel() + np.uint8(_A)).tobytes().decode("ascii")


def str_to_levels(symbols: str) -> np.ndarray:
    """'a'..'z' string -> levels 0..25 (uint8, 1-D); any other character is a DataError naming it."""
    try:
        raw = np.frombuffer(symbols.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError as e:
        raise DataError(f"ECG symbol string contains a non-ASCII character at {e.start}; expected only 'a'..'z'") from None
    levels = raw - np.uint8(_A)  # wraps below 'a' to large values
    bad = np.flatnonzero(levels >= NUM_LEVELS)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"ECG symbol string has {symbols[i]!r} at position {i}; expected only 'a'..'z'")
    return levels


def symbolize(signal: np.ndarray, cfg: SymbolConfig) -> tuple[str, NormParams]:
    """One segment ``[leads, L]`` (mV) -> symbol string of length leads * L, plus its parameters."""
    if np.ndim(signal) != 2:
        raise ShapeError("ECG segment", np.shape(signal), "[leads, L]")
    norm, params = normalize(signal, cfg)
    return levels_to_str(quantize(norm)), params


def desymbolize(symbols: str | np.ndarray, params: NormParams, cfg: SymbolConfig) -> np.ndarray:
    """Symbols (string or levels) of one segment -> ``[leads, L]`` float32 mV (bin centres)."""
    levels = str_to_levels(symbols) if isinstance(symbols, str) else np.asarray(symbols, dtype=np.uint8).ravel()
    if levels.size % params.num_leads:
        raise ShapeError("ECG symbols", levels.shape, f"a multiple of num_leads={params.num_leads}")
    return denormalize(dequantize(levels.reshape(params.num_leads, -1)), params, cfg)
