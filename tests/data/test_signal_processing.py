from __future__ import annotations

import numpy as np
import pytest

from ecg_bench.data.record import LEADS
from ecg_bench.errors import DataError, ShapeError
from ecg_bench.signals.processing import nan_policy, resample, segment, to_canonical_leads, zscore


def _rows(n_leads: int, n: int = 100) -> np.ndarray:
    # row i is constant i, so the order of rows is visible in the values
    return np.repeat(np.arange(n_leads, dtype=np.float32)[:, None], n, axis=1)


def test_canonical_leads_reorders_and_matches_case_insensitively():
    shuffled = ["V6", "AVR", "I", "V1", "II", "III", "AVL", "AVF", "V2", "V3", "V4", "V5", "extra"]
    out = to_canonical_leads(_rows(13), shuffled)
    assert out.shape == (12, 100)
    for k, name in enumerate(LEADS):
        assert out[k, 0] == [s.lower() for s in shuffled].index(name.lower())


def test_canonical_leads_missing_lead_is_named():
    leads = [name for name in LEADS if name != "V4"]
    with pytest.raises(DataError, match="V4") as info:
        to_canonical_leads(_rows(11), leads)
    assert info.value.reason == "missing lead"


def test_canonical_leads_rows_must_match_names():
    with pytest.raises(ShapeError):
        to_canonical_leads(_rows(12), LEADS[:11])


def test_resample_keeps_frequency_and_amplitude():
    fs_in, fs_out, f = 500, 250, 10.0
    t = np.arange(10 * fs_in) / fs_in
    x = (1.5 * np.sin(2 * np.pi * f * t))[None, :]
    y = resample(x, fs_in, fs_out)
    assert y.dtype == np.float32 and y.shape == (1, 10 * fs_out)
    spec = np.abs(np.fft.rfft(y[0]))
    freqs = np.fft.rfftfreq(y.shape[1], 1 / fs_out)
    assert freqs[spec.argmax()] == pytest.approx(f, abs=0.11)
    core = y[0, fs_out:-fs_out]  # away from the edges
    t_out = np.arange(y.shape[1]) / fs_out
    np.testing.assert_allclose(core, 1.5 * np.sin(2 * np.pi * f * t_out[fs_out:-fs_out]), atol=0.02)


@pytest.mark.parametrize("fs_in,fs_out,n_out", [(500, 100, 1000), (360, 250, 2500), (257, 500, 5000), (250, 250, 2500)])
def test_resample_lengths(fs_in, fs_out, n_out):
    x = np.random.default_rng(0).standard_normal((12, 10 * fs_in))
    assert resample(x, fs_in, fs_out).shape == (12, n_out)


def test_segment_drops_short_tail():
    x = np.arange(2 * 1050, dtype=np.float32).reshape(2, 1050)
    segs = segment(x, 250)
    assert segs.shape == (4, 2, 250)
    np.testing.assert_array_equal(segs[1, 0], x[0, 250:500])
    np.testing.assert_array_equal(segs[3, 1], x[1, 750:1000])
    assert segment(x[:, :100], 250).shape == (0, 2, 250)
    with pytest.raises(ValueError):
        segment(x, 0)


def test_nan_policy_interpolates_short_gaps():
    t = np.linspace(0, 1, 500)
    x = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]).astype(np.float32)
    y = x.copy()
    y[0, 100:110] = np.nan
    y[1, :3] = np.inf
    out, reason = nan_policy(y, max_gap=50)
    assert reason is None and np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 100:110], x[0, 100:110], atol=5e-3)
    assert np.isnan(y[0, 105])  # input untouched


def test_nan_policy_skip_reasons():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 500)).astype(np.float32)
    names = ["I", "II", "III"]
    all_nan = x.copy()
    all_nan[1] = np.nan
    assert nan_policy(all_nan, names)[1] == "all-NaN lead: II"
    flat = x.copy()
    flat[2] = 0.3
    assert nan_policy(flat, names)[1] == "flat lead: III"
    gap = x.copy()
    gap[0, 10:200] = np.nan
    assert nan_policy(gap, names, max_gap=100)[1].startswith("long NaN gap: lead I")
    assert nan_policy(gap, names)[1] is None  # no limit: interpolated


def test_zscore_flat_lead_is_zero():
    x = np.stack([np.full(100, 2.0), np.arange(100.0)])
    z = zscore(x, eps=1e-3)
    np.testing.assert_array_equal(z[0], 0.0)
    assert abs(z[1].mean()) < 1e-5 and z[1].std() == pytest.approx(1.0, abs=1e-5)
