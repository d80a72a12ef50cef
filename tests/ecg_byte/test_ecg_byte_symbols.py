"""Normalization, quantization and symbols: exact levels, flattening order, error bounds, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_bench.ecg_byte.symbols import (
    NormParams,
    SymbolConfig,
    dequantize,
    desymbolize,
    levels_to_str,
    normalize,
    quantize,
    str_to_levels,
    symbolize,
)
from ecg_bench.errors import ConfigError, DataError, ShapeError


def test_levels_follow_the_original_formula_and_flatten_lead_by_lead():
    sig = np.array([[0.0, 1.05, 2.05, 2.6], [2.6, 1.35, 0.05, 0.0]], dtype=np.float32)
    symbols, params = symbolize(sig, SymbolConfig())
    # original: x' = (x - min) / (max - min + 1e-6); level = min(floor(26 x'), 25)
    expected = np.minimum(np.floor((sig - 0.0) / (2.6 + 1e-6) * 26), 25).astype(int)
    assert symbols == "".join(chr(97 + v) for v in expected.ravel())
    assert symbols[:4] == "akuz" and symbols[4:] == "znaa"  # lead 0 first, then lead 1
    assert params.mins.tolist() == [0.0] and params.maxs.tolist() == pytest.approx([2.6])


def test_levels_to_str_and_back_are_exact_for_every_level():
    levels = np.arange(26, dtype=np.uint8).repeat(3)
    s = levels_to_str(levels)
    assert s[:3] == "aaa" and s[-3:] == "zzz"
    np.testing.assert_array_equal(str_to_levels(s), levels)


@pytest.mark.parametrize("scope", ["segment", "lead"])
def test_reconstruction_error_is_at_most_half_a_level(scope):
    rng = np.random.default_rng(0)
    sig = (rng.normal(size=(12, 800)) * rng.uniform(0.05, 3, size=(12, 1))).astype(np.float32)
    cfg = SymbolConfig(scope=scope)
    symbols, params = symbolize(sig, cfg)
    rec = desymbolize(symbols, params, cfg)
    step = ((params.maxs - params.mins + cfg.eps) / 26).reshape(-1, 1)
    assert params.mins.shape == ((1,) if scope == "segment" else (12,))
    ratio = np.abs(rec - sig) / step
    assert ratio.max() <= 0.5 + 1e-3 and ratio.max() > 0.4  # bin centres: half a step at most


def test_lead_scope_gives_finer_levels_to_small_leads():
    t = np.linspace(0, 6.28, 500, dtype=np.float32)
    sig = np.stack([np.sin(t) * 3, np.sin(t) * 0.1])
    seg = desymbolize(*symbolize(sig, SymbolConfig("segment")), SymbolConfig("segment"))
    lead = desymbolize(*symbolize(sig, SymbolConfig("lead")), SymbolConfig("lead"))
    assert np.abs(lead[1] - sig[1]).max() < np.abs(seg[1] - sig[1]).max() / 10


def test_batched_normalize_equals_one_by_one():
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(5, 3, 40)).astype(np.float32)
    norm, params = normalize(batch, SymbolConfig())
    for i in range(5):
        one, p = normalize(batch[i], SymbolConfig())
        np.testing.assert_array_equal(norm[i], one)
        np.testing.assert_array_equal(params[i].mins, p.mins)


def test_percentile_clipping_bounds_the_range():
    sig = np.zeros((1, 1000), dtype=np.float32)
    sig[0, ::2] = 1.0
    sig[0, 7] = 100.0  # one spike
    _, params = symbolize(sig, SymbolConfig(clip_percentiles=(1, 99)))
    assert params.maxs[0] == pytest.approx(1.0)
    _, raw = symbolize(sig, SymbolConfig())
    assert raw.maxs[0] == 100.0


def test_flat_segment_is_all_a_and_reconstructs_exactly_enough():
    sig = np.full((12, 50), 0.3, dtype=np.float32)
    s, p = symbolize(sig, SymbolConfig())
    assert s == "a" * 600
    assert np.abs(desymbolize(s, p, SymbolConfig()) - 0.3).max() < 1e-6


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(DataError, match="'A' at position 2"):
        str_to_levels("abAc")
    with pytest.raises(DataError, match="non-ASCII"):
        str_to_levels("abé")
    with pytest.raises(DataError, match="NaN"):
        symbolize(np.array([[0.0, np.nan]], dtype=np.float32), SymbolConfig())
    with pytest.raises(ShapeError):
        symbolize(np.zeros(10, dtype=np.float32), SymbolConfig())
    with pytest.raises(ShapeError, match="num_leads=12"):
        desymbolize("abc", NormParams(np.zeros(1), np.ones(1), 12), SymbolConfig())
    with pytest.raises(ConfigError, match="scope"):
        SymbolConfig(scope="record")
    with pytest.raises(ConfigError, match="clip_percentiles"):
        SymbolConfig(clip_percentiles=(99, 1))


def test_dequantize_is_the_bin_centre():
    np.testing.assert_allclose(dequantize(np.array([0, 25], dtype=np.uint8)), [0.5 / 26, 25.5 / 26])
    assert quantize(np.array([0.0, 1 / 26, 0.999999, 1.0])).tolist() == [0, 1, 25, 25]
