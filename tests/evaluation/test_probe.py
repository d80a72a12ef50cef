"""``ecg-bench probe``: weighted AUROC, patient-disjoint folds, and a pretrained tiny encoder probed above a random one."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_bench import cli
from ecg_bench.errors import ConfigError
from ecg_bench.evaluation.probe import ProbeOptions, label_matrix, patient_folds, run_probe, weighted_auroc


def test_weighted_auroc_matches_pairs_and_weights():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=40).round(1), rng.random(40) < 0.4  # rounding makes ties
    pos, neg = s[y], s[~y]
    pairs = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert weighted_auroc(s, y, np.ones((1, 40)))[0] == pytest.approx(pairs)
    w = rng.integers(0, 3, size=40).astype(float)  # integer weights = repeating samples
    rep = np.repeat(np.arange(40), w.astype(int))
    pos, neg = s[rep][y[rep]], s[rep][~y[rep]]
    expected = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert weighted_auroc(s, y, w[None])[0] == pytest.approx(expected)


def test_folds_are_patient_disjoint_and_labels_need_both_classes():
    patients = [f"p{i // 3}" for i in range(30)]
    folds = patient_folds(patients, 5, seed=1)
    assert {len({f for p2, f in zip(patients, folds) if p2 == p}) for p in set(patients)} == {1}
    assert sorted(set(folds)) == list(range(5))
    names, y = label_matrix([{"labels": ["a"] * (i % 2) + ["b"]} for i in range(30)], min_count=5)
    assert names == ["a"] and y.shape == (30, 1) and y.sum() == 15  # "b" is on every segment: not probed
    assert ProbeOptions(store="s", num_folds=1).problems() == ["num_folds must be >= 2, got 1"]
    with pytest.raises(ConfigError, match="num_folds must be >= 2, got 1"):
        run_probe(ProbeOptions(store="s", num_folds=1))


def test_probe_flags_are_checked_together(capsys):
    """Bad probe and encoder options on the command line: one error listing each, exit status 2, before any work."""
    assert cli.main(["probe", "--store", "nowhere", "--num_folds", "1", "--encoder.type", "st_mem", "--encoder.size", "huge"]) == 2
    err = capsys.readouterr().err
    assert "num_folds must be >= 2, got 1" in err and "encoder (st_mem): size must be one of" in err


def test_probe_reads_the_synthetic_attributes(tmp_path, capsys):
    """End to end through the CLI on a synthetic store: the attributes a frozen random MTAE already sees (noise,
    QRS voltage) are probed far above chance, so misaligned labels, folds or scores would fail this test.

    (A pretrained tiny encoder probing clearly above a random one is not reached yet: see benchmarks/README.md.)"""
    import json

    from ecg_bench.config import DataConfig, SourceOptions, choice
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    source = choice(SourceOptions, "synthetic", num_patients=40, records_per_patient=1)
    store = build_store(SOURCES.get("synthetic")(DataConfig(source=source, seed=11)), tmp_path / "store", "synthetic", 250, 500)
    out = tmp_path / "probe.json"
    (tmp_path / "probe.yaml").write_text(f"store: {store.path}\nencoder: {{type: mtae, num_tokens: 1}}\n")
    assert cli.main(["probe", "--config", str(tmp_path / "probe.yaml"), "--num_folds", "3", "--out", str(out)]) == 0
    assert "macro AUROC" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert set(r["per_label"]) == {"atrial fibrillation", "bradycardia", "low QRS voltage", "noisy recording",
                                   "sinus rhythm", "tachycardia"}  # fmt: skip
    assert r["per_label"]["noisy recording"] > 0.9 and r["per_label"]["low QRS voltage"] > 0.75, r["per_label"]
    m = r["macro_auroc"]
    assert 0.5 < m["ci_low"] <= m["value"] <= m["ci_high"] < 1.0
    assert r["patients"] == 40 and r["segments"] == 200 and r["encoder"] == "mtae" and r["features"] == 64
