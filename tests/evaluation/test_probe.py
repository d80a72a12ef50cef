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
    with pytest.raises(ConfigError, match="num_folds must be >= 2, got 1"):
        ProbeOptions(store="s", num_folds=1)


@pytest.mark.slow
def test_pretrained_encoder_probes_above_a_random_one(tmp_path, capsys):
    """MAE-pretrained tiny MTAE vs the same encoder at random init, on the synthetic attributes (same folds)."""
    from ecg_bench.config import DataConfig
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store
    from ecg_bench.models.encoders.mae import MAEPretrainOptions, pretrain_mae
    from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions

    store = build_store(SOURCES.get("synthetic")(DataConfig(num_patients=60, records_per_patient=1, seed=11)),
                        tmp_path / "store", "synthetic", 250, 500)  # fmt: skip
    pretrain_mae(MAEPretrainOptions(store=str(store.path), out=str(tmp_path / "mtae"), encoder="mtae",
                                    loop=PretrainLoopOptions(steps=60, batch_size=16, lr=2e-3)))  # fmt: skip
    common = {"store": str(store.path), "encoder": "mtae", "num_folds": 3, "max_iter": 100}
    random = run_probe(ProbeOptions(**common))
    assert cli.main(["probe", *[f"--{k}={v}" for k, v in common.items()], "--weights", str(tmp_path / "mtae")]) == 0
    printed = capsys.readouterr().out
    pretrained = float(printed.split("macro AUROC ")[1].split()[0])
    assert set(random["per_label"]) == {"atrial fibrillation", "bradycardia", "low QRS voltage", "noisy recording",
                                        "sinus rhythm", "tachycardia"}  # fmt: skip
    low, high = random["macro_auroc"]["ci_low"], random["macro_auroc"]["ci_high"]
    assert low <= random["macro_auroc"]["value"] <= high
    assert pretrained > random["macro_auroc"]["value"] + 0.05, (pretrained, random)
