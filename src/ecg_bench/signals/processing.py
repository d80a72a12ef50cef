"""Generic signal preprocessing: canonical lead order, NaN/flat policy, resampling, segmentation, z-score.

Every function takes and returns plain numpy arrays shaped ``[leads, samples]`` (or ``[n, leads, L]``
for segments) and never touches files, so any source can reuse them.

Errors raised here carry a short ``reason`` attribute (e.g. ``"missing lead"``) that the segment store
uses as the key when it counts skipped records.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from ecg_bench.errors import DataError, ShapeError
from ecg_bench.signals.leads import LEADS

FLAT_STD_MV = 1e-6
"""A lead whose standard deviation over the whole record is below this (mV) is flat (electrode off)."""


def _data_error(reason: str, message: str) -> DataError:
    err = DataError(message)
    err.reason = reason  # type: ignore[attr-defined]
    return err


def _check_2d(signal: np.ndarray, what: str = "signal") -> np.ndarray:
    sig = np.asarray(signal)
    if sig.ndim != 2:
        raise ShapeError(what, sig.shape, "[leads, samples]")
    return sig


def to_canonical_leads(signal: np.ndarray, leads: Sequence[str], canonical: Sequence[str] = LEADS) -> np.ndarray:
    """Reorder the rows of ``signal`` (named by ``leads``) to ``canonical`` (default: the 12 LEADS).

    Matching is case-insensitive (PTB-XL writes ``AVR``); extra leads are dropped. A missing lead
    raises DataError naming it.
    """
    sig = _check_2d(signal)
    if sig.shape[0] != len(leads):
        raise ShapeError("signal", sig.shape, f"[{len(leads)} leads (one row per lead name), samples]")
    pos: dict[str, int] = {}
    for i, name in enumerate(leads):
        key = str(name).strip().lower()
        if key in pos:
            raise _data_error("duplicate lead", f"duplicate lead {name!r} in {list(leads)}")
        pos[key] = i
    missing = [name for name in canonical if name.lower() not in pos]
    if missing:
        raise _data_error("missing lead", f"missing lead(s) {', '.join(missing)}; record has {list(leads)}")
    order = [pos[name.lower()] for name in canonical]
    return np.ascontiguousarray(sig[order])


def _nan_runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a 1-D boolean mask."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def nan_policy(
    signal: np.ndarray, leads: Sequence[str] | None = None, max_gap: int | None = None
) -> tuple[np.ndarray, str | None]:
    """Apply the missing-data policy to a ``[leads, samples]`` record.

    Returns ``(signal, None)`` with NaN/inf gaps linearly interpolated (edge gaps take the nearest
    value), or ``(signal, reason)`` when the record should be skipped: a lead that is all NaN, a lead
    that is flat (std < 1e-6 mV) for the whole record, or a gap longer than ``max_gap`` samples
    (``None`` = any length is interpolated). ``reason`` reads ``"<category>: <detail>"``; the
    category alone is what counts are keyed by.
    """
    sig = _check_2d(signal).astype(np.float32, copy=True)
    names = list(leads) if leads is not None else [str(i) for i in range(sig.shape[0])]
    bad = ~np.isfinite(sig)
    all_nan = [names[i] for i in np.flatnonzero(bad.all(axis=1))]
    if all_nan:
        return sig, f"all-NaN lead: {', '.join(all_nan)}"
    with np.errstate(invalid="ignore"):
        std = np.nanstd(np.where(bad, np.nan, sig), axis=1)
    flat = [names[i] for i in np.flatnonzero(std < FLAT_STD_MV)]
    if flat:
        return sig, f"flat lead: {', '.join(flat)}"
    if bad.any():
        t = np.arange(sig.shape[1])
        for i in np.flatnonzero(bad.any(axis=1)):
            if max_gap is not None:
                longest = int(_nan_runs(bad[i]).max())
                if longest > max_gap:
                    return sig, f"long NaN gap: lead {names[i]} has {longest} missing samples (max {max_gap})"
            ok = ~bad[i]
            sig[i, ~ok] = np.interp(t[~ok], t[ok], sig[i, ok])
    return sig, None


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis from ``fs_in`` to ``fs_out`` Hz; float32 result.

    The ratio is approximated by a fraction with denominator <= 1000 (exact for the usual 100, 250,
    257, 360, 400, 500, 1000 Hz rates).
    """
    if fs_in <= 0 or fs_out <= 0:
        raise DataError(f"sampling rates must be positive, got fs_in={fs_in}, fs_out={fs_out}")
    x = np.asarray(signal)
    ratio = Fraction(float(fs_out) / float(fs_in)).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    if up == down:
        return x.astype(np.float32, copy=True)
    # padtype="line": extend the edges linearly so a baseline offset does not ring at the borders.
    y = resample_poly(x.astype(np.float64, copy=False), up, down, axis=-1, padtype="line")
    return y.astype(np.float32)


def segment(signal: np.ndarray, seg_len: int) -> np.ndarray:
    """Cut ``[leads, samples]`` into non-overlapping ``[n, leads, seg_len]`` windows; a short tail is dropped."""
    sig = _check_2d(signal)
    if int(seg_len) != seg_len or seg_len <= 0:
        raise ValueError(f"seg_len must be a positive integer, got {seg_len}")
    seg_len = int(seg_len)
    n = sig.shape[1] // seg_len
    out = sig[:, : n * seg_len].reshape(sig.shape[0], n, seg_len).transpose(1, 0, 2)
    return np.ascontiguousarray(out)


def zscore(x: np.ndarray, axis: int = -1, eps: float = 1e-6) -> np.ndarray:
    """``(x - mean) / max(std, eps)`` along ``axis``; a flat lead becomes zeros instead of blowing up."""
    x = np.asarray(x, dtype=np.float64)  # float64 statistics: a constant lead centres to ~0, not to float32 round-off
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    return ((x - mean) / np.maximum(std, eps)).astype(np.float32)
