"""Tests of ecg_bench.evaluation.statistics against numpy / scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ecg_bench.evaluation.statistics import bootstrap_ci, format_table, summarize_runs


def test_bootstrap_ci_contains_mean_and_is_seeded():
    values = np.random.default_rng(1).binomial(1, 0.6, size=200).astype(float)
    mean, low, high = bootstrap_ci(values, n_boot=2000, seed=3)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert bootstrap_ci(values, n_boot=2000, seed=3) == (mean, low, high)
    assert bootstrap_ci(values, n_boot=2000, seed=4) != (mean, low, high)


def test_bootstrap_ci_width_matches_normal_approximation():
    values = np.random.default_rng(2).normal(0.5, 0.2, size=1000)
    _, low, high = bootstrap_ci(values, n_boot=4000, seed=0)
    expected = 2 * 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert high - low == pytest.approx(expected, rel=0.1)


def test_bootstrap_ci_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.binomial(1, 0.5, size=50), seed=0)
    large = bootstrap_ci(rng.binomial(1, 0.5, size=5000), seed=0)
    assert (large[2] - large[1]) < (small[2] - small[1]) / 5


def test_bootstrap_ci_constant_and_alpha():
    assert bootstrap_ci([0.7] * 10) == pytest.approx((0.7, 0.7, 0.7))
    values = np.random.default_rng(5).random(300)
    _, lo90, hi90 = bootstrap_ci(values, alpha=0.10, seed=0)
    _, lo99, hi99 = bootstrap_ci(values, alpha=0.01, seed=0)
    assert lo99 < lo90 and hi90 < hi99


def test_bootstrap_ci_chunking_keeps_n_boot(monkeypatch):
    import ecg_bench.evaluation.statistics as S

    values = np.random.default_rng(6).random(100)
    whole = bootstrap_ci(values, n_boot=500, seed=0)
    monkeypatch.setattr(S, "_MAX_BOOT_CELLS", 3000)  # 30 resamples per chunk
    chunked = bootstrap_ci(values, n_boot=500, seed=0)
    assert chunked[0] == whole[0]
    assert chunked[1] == pytest.approx(whole[1], abs=0.02)


@pytest.mark.parametrize("kwargs", [{"values": []}, {"values": [1.0], "n_boot": 0}, {"values": [1.0], "alpha": 1.5}])
def test_bootstrap_ci_bad_input(kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(**kwargs)


def test_summarize_runs_against_numpy_scipy():
    runs = [
        {"acc": 0.50, "bleu": 0.10},
        {"acc": 0.55, "bleu": 0.12},
        {"acc": 0.61, "bleu": 0.09},
        {"acc": 0.58, "bleu": 0.11},
    ]
    out = summarize_runs(runs)
    assert set(out) == {"acc", "bleu"}
    for name in ("acc", "bleu"):
        x = np.array([r[name] for r in runs])
        lo, hi = stats.t.interval(0.95, df=x.size - 1, loc=x.mean(), scale=stats.sem(x))
        s = out[name]
        assert s["n"] == 4
        assert s["mean"] == pytest.approx(x.mean())
        assert s["std"] == pytest.approx(x.std(ddof=1))
        assert s["ci_low"] == pytest.approx(lo)
        assert s["ci_high"] == pytest.approx(hi)


def test_summarize_runs_single_run_and_missing_metric():
    assert summarize_runs([{"acc": 0.4}])["acc"] == {"mean": 0.4, "std": 0.0, "n": 1, "ci_low": 0.4, "ci_high": 0.4}
    out = summarize_runs([{"acc": 0.4, "meteor": 0.2}, {"acc": 0.6}])
    assert out["acc"]["n"] == 2 and out["meteor"]["n"] == 1
    with pytest.raises(ValueError):
        summarize_runs([])


def test_format_table():
    rows = {
        "real": {"acc_exact": 0.4567, "bleu": 0.1},
        "zeros": {"acc_exact": 0.25, "bleu": 0.0},
        "no_signal": {"acc_exact": 1.0},
    }
    text = format_table(rows, ["acc_exact", "bleu"])
    lines = text.splitlines()
    assert lines[0].split() == ["condition", "acc_exact", "bleu"]
    assert lines[2].split() == ["real", "45.7", "10.0"]
    assert lines[3].split() == ["zeros", "25.0", "0.0"]
    assert lines[4].split() == ["no_signal", "100.0", "-"]
    assert len({len(line) for line in lines}) == 1  # right-aligned columns: every line equally wide


def test_format_table_with_run_summaries():
    summary = summarize_runs([{"acc": 0.5}, {"acc": 0.7}])
    text = format_table({"real": summary}, ["acc"])
    s = summary["acc"]
    assert f"60.0 [{100 * s['ci_low']:.1f}, {100 * s['ci_high']:.1f}]" in text
