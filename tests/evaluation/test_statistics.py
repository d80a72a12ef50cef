"""Tests of ecg_bench.evaluation.statistics against numpy / scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ecg_bench.evaluation.metrics import AnswerSample, bleu_stats
from ecg_bench.evaluation.statistics import (
    bootstrap_ci,
    cluster_bootstrap,
    format_table,
    results_tables,
    summarize_condition,
    summarize_runs,
)


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


# ---------------------------------------------------------------- patient-clustered CIs, per-type scores


def _answers(spec):
    """AnswerSamples from (patient, question_type, correct) triples: correct -> prediction == reference."""
    return [
        AnswerSample("yes" if ok else "no", "yes", question_type=qtype, patient_id=pid, item_id=f"i{k}")
        for k, (pid, qtype, ok) in enumerate(spec)
    ]


def test_cluster_ci_of_repeated_items_is_that_of_one_item_per_patient():
    """3 patients x 10 identical answers carry the information of 3 answers, not of 30."""
    per_patient = {"p1": 1.0, "p2": 0.0, "p3": 1.0}
    values = np.repeat(list(per_patient.values()), 10)
    patients = np.repeat(list(per_patient), 10)
    clustered = cluster_bootstrap(values, patients, seed=7)
    three = cluster_bootstrap(np.array(list(per_patient.values())), ["a", "b", "c"], seed=7)
    turn_level = cluster_bootstrap(values, np.arange(30), seed=7)
    assert clustered == pytest.approx(three, abs=1e-12)  # the same resamples of 3 patients
    assert clustered[0] == pytest.approx(2 / 3)
    assert clustered[1:] == pytest.approx((0.0, 1.0))  # P(only p2 drawn) = 1/27 > 2.5 %
    width = clustered[2] - clustered[1]
    assert width > 2.5 * (turn_level[2] - turn_level[1])
    # summarize_condition resamples patients too (and reports how many there are)
    answers = _answers([(pid, None, bool(v)) for pid, v in zip(patients, values)])
    out = summarize_condition(answers, ["accuracy"], seed=7)
    assert out["clusters"] == 3 and out["num_samples"] == 30
    assert out["ci95"]["acc_exact"] == pytest.approx(list(clustered[1:]))


@pytest.mark.parametrize("seed", [0, 1])
def test_one_item_per_cluster_matches_scipy_percentile_bootstrap(seed):
    x = np.random.default_rng(seed).normal(0.5, 0.2, size=80)
    ours = cluster_bootstrap(x, [f"p{i}" for i in range(x.size)], n_resamples=20_000, seed=seed)
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=20_000, random_state=seed)
    assert ours[0] == pytest.approx(x.mean())
    assert ours[1] == pytest.approx(ref.confidence_interval.low, abs=0.003)  # Monte-Carlo error ~0.001
    assert ours[2] == pytest.approx(ref.confidence_interval.high, abs=0.003)


def test_cluster_bootstrap_is_seeded_and_checks_input():
    x = np.random.default_rng(3).random(50)
    groups = np.arange(50) // 5
    assert cluster_bootstrap(x, groups, seed=2) == cluster_bootstrap(x, groups, seed=2)
    assert cluster_bootstrap(x, groups, seed=2) != cluster_bootstrap(x, groups, seed=3)
    one = cluster_bootstrap(x, ["p"] * 50)
    assert one == pytest.approx((x.mean(), x.mean(), x.mean()))  # a single patient: nothing to resample
    with pytest.raises(ValueError, match="per-sample rows"):
        cluster_bootstrap(x, groups[:10])
    with pytest.raises(ValueError, match="n_resamples"):
        cluster_bootstrap(x, groups, n_resamples=0)


def test_cluster_bootstrap_leaves_out_undefined_resamples():
    """A statistic undefined on some resamples (NaN, e.g. an AUROC whose resample drew no positive) gets its CI from
    the resamples where it is defined; undefined everywhere gives NaN."""
    x = np.r_[1.0, np.zeros(9)]  # one positive sample, in cluster 0

    def share_if_positive(sums):  # [B, 2] -> the mean where the positive was drawn, else undefined
        return np.where(sums[:, 0] > 0, sums[:, 0] / sums[:, 1], np.nan)

    value, low, high = cluster_bootstrap(x, np.arange(10), share_if_positive, seed=0)
    assert value == pytest.approx(0.1) and 0.05 <= low <= value <= high <= 0.5 and np.isfinite([low, high]).all()
    nan = cluster_bootstrap(x, np.arange(10), lambda s: np.full(len(s), np.nan), seed=0)
    assert np.isnan(nan).all()


def test_per_type_scores_equal_the_hand_count():
    spec = (
        [("p1", "single-verify", True), ("p1", "single-verify", True)]
        + [("p2", "single-verify", True), ("p3", "single-verify", False)]
        + [("p1", "single-choose", True), ("p4", "single-choose", False), ("p5", "single-choose", False)]
        + [("p2", "single-query", False), ("p6", "single-query", False)]
        + [("p7", None, True)]
    )  # fmt: skip
    out = summarize_condition(_answers(spec), ["accuracy", "bleu"], n_resamples=200)
    assert out["metrics"]["acc_exact"] == pytest.approx(5 / 10)
    per = out["per_type"]
    assert list(per) == ["(none)", "single-choose", "single-query", "single-verify"]
    assert per["single-verify"]["metrics"]["acc_exact"] == pytest.approx(3 / 4)
    assert per["single-choose"]["metrics"]["acc_exact"] == pytest.approx(1 / 3)
    assert per["single-query"]["metrics"]["acc_exact"] == 0.0
    assert per["(none)"]["metrics"]["acc_exact"] == 1.0
    assert [per[t]["num_samples"] for t in per] == [1, 3, 2, 4]
    assert [per[t]["clusters"] for t in per] == [1, 3, 2, 3]
    for block in [out, *per.values()]:
        assert set(block["ci95"]) == set(block["metrics"]) == {"acc_exact", "acc_normalized", "bleu"}
        for key, (lo, hi) in block["ci95"].items():
            assert lo <= block["metrics"][key] + 1e-12 and block["metrics"][key] <= hi + 1e-12
    assert per["single-query"]["ci95"]["acc_exact"] == [0.0, 0.0]
    assert "per_topic" not in out  # no sample has a topic
    assert [row["acc_exact"] for row in out["per_sample"]] == [float(ok) for _, _, ok in spec]
    assert all("bleu" not in row for row in out["per_sample"])  # corpus-level: no per-sample value


def test_corpus_bleu_per_type_is_the_corpus_bleu_of_that_type():
    preds = ["the heart rhythm is normal sinus", "st elevation in leads v1 to v4", "yes", "left bundle branch block seen"]
    refs = ["the heart rhythm is normal sinus rhythm", "st elevation in leads v1 to v3", "yes", "left bundle branch block"]
    types = ["report", "report", "verify", "report"]
    answers = [AnswerSample(p, r, question_type=t, patient_id=f"p{i % 2}") for i, (p, r, t) in enumerate(zip(preds, refs, types))]
    out = summarize_condition(answers, ["bleu"], n_resamples=100)
    assert out["metrics"]["bleu"] == pytest.approx(bleu_stats(preds, refs).value())
    reports = [i for i, t in enumerate(types) if t == "report"]
    expected = bleu_stats([preds[i] for i in reports], [refs[i] for i in reports]).value()
    assert out["per_type"]["report"]["metrics"]["bleu"] == pytest.approx(expected)
    assert 0 < expected < 1


def test_per_topic_and_results_tables():
    answers = [
        AnswerSample("yes", "yes", question_type="verify", topic="rate", patient_id="a"),
        AnswerSample("no", "yes", question_type="verify", topic="rhythm", patient_id="b"),
        AnswerSample("fast", "fast", question_type="choose", topic="rate", patient_id="b"),
    ]
    cond = summarize_condition(answers, ["accuracy"], n_resamples=100)
    cond.pop("per_sample")
    assert cond["per_topic"]["rate"]["metrics"]["acc_exact"] == 1.0
    assert cond["per_topic"]["rhythm"]["metrics"]["acc_exact"] == 0.0
    text = results_tables({"real": cond, "zeros": cond})
    lo, hi = cond["ci95"]["acc_exact"]
    assert "real (n=3, 2 patients)" in text and f"66.7 [{100 * lo:.1f}, {100 * hi:.1f}]" in text
    assert "question_type / condition" in text and "verify / zeros (n=2, 2 patients)" in text
    assert "topic / condition" in text and "rhythm / real (n=1, 1 patients)" in text
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("choose / zeros"))) < lines.index(
        next(x for x in lines if x.startswith("verify / real"))
    )  # grouped by type, the conditions of one type together
    old = results_tables({"real": {"metrics": {"acc_exact": 0.5}}})  # a results.json from before CIs
    assert old.splitlines()[2].split() == ["real", "50.0"]


def test_two_metrics_with_one_key_are_refused(monkeypatch):
    from ecg_bench.evaluation import metrics as M

    monkeypatch.setitem(M.METRICS._items, "acc_copy", M.Metric(lambda samples, opts: {"acc_exact": np.zeros(len(samples))}))
    with pytest.raises(ValueError, match="'acc_copy' returns key 'acc_exact'"):
        summarize_condition(_answers([("p", None, True)]), ["accuracy", "acc_copy"])
