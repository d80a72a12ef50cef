"""Signal2Vec: skip-gram embeddings of ECG-Byte tokens (word2vec, Mikolov et al. 2013), trained in torch.

Corpus: ECG-Byte token sequences, one per segment (``corpus_from_store``). Each epoch:

1. subsampling of frequent tokens: a token of corpus frequency ``f`` is kept with probability
   ``min(1, (sqrt(f / t) + 1) * t / f)`` (``t = subsample``, the formula of the word2vec C code);
   dropped tokens are removed, which also widens the effective window;
2. a dynamic window per centre token, ``b ~ U{1..window}``; pairs (centre, context) at distance
   ``<= b`` inside one segment;
3. for each pair, ``negatives`` noise tokens drawn from the unigram distribution raised to 0.75;
4. loss ``-log s(u_c . v_o) - sum_k log s(-u_c . v_k)`` (``s`` = sigmoid), Adam, linear decay
   of the learning rate to 10 %.

The vectors and their files: ``vectors.py``. Registered as the pretrainer ``signal2vec``:
``ecg-bench pretrain signal2vec --store DIR --tokenizer tok.json --out s2v.safetensors``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ecg_bench.config import PretrainerOptions
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger, progress
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer
from ecg_bench.models.encoders.signal2vec.vectors import Signal2Vec, Signal2VecConfig, vocab_fingerprint

log = get_logger(__name__)


# ---------------------------------------------------------------- corpus


def corpus_from_store(store, tokenizer, num_samples: int = 0, seed: int = 0, batch_size: int = 256) -> list[np.ndarray]:
    """ECG-Byte ids of ``num_samples`` random segments (0 = all), each first put through the ``signal``
    representation (lead means removed, clipped), as the ``signal2vec`` encoder sees them."""
    from ecg_bench.representations.signal import SignalRepresentation

    rep = SignalRepresentation()
    n = len(store)
    k = n if num_samples <= 0 else min(num_samples, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    out: list[np.ndarray] = []
    for b in progress(range(0, k, batch_size), desc="encode corpus", leave=False):
        x = np.stack([rep(s).numpy() for s in store.signals(idx[b : b + batch_size])])
        out.extend(tokenizer.encode_signals(x)[0])
    return out


def keep_probability(counts: np.ndarray, t: float) -> np.ndarray:
    """Mikolov's subsampling: probability of keeping a token of each id (1 for unseen ids or t = 0)."""
    f = counts / max(1, counts.sum())
    if t <= 0:
        return np.ones_like(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (np.sqrt(f / t) + 1) * t / f
    return np.where(f > 0, np.minimum(p, 1.0), 1.0)


def skipgram_pairs(seqs: Sequence[np.ndarray], window: int, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[P, 2]`` (centre, context) pairs after subsampling, with a dynamic window per centre token."""
    kept = [s[rng.random(len(s)) < keep[s]] for s in seqs]
    tokens = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    seq_id = np.repeat(np.arange(len(kept)), [len(s) for s in kept])
    reach = rng.integers(1, window + 1, size=len(tokens))  # b of each centre
    pairs = []
    for d in range(1, window + 1):
        same = seq_id[:-d] == seq_id[d:]
        left = np.flatnonzero(same & (reach[:-d] >= d))  # centre i, context i + d
        right = np.flatnonzero(same & (reach[d:] >= d))  # centre i + d, context i
        pairs += [np.stack([tokens[left], tokens[left + d]], 1), np.stack([tokens[right + d], tokens[right]], 1)]
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)


# ---------------------------------------------------------------- training


def sgns_loss(
    inp: torch.Tensor, out: torch.Tensor, centre: torch.Tensor, context: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Mean skip-gram negative-sampling loss of a batch; ``noise`` is ``[B, K]``."""
    u = inp[centre]  # [B, D]
    pos = (u * out[context]).sum(-1)
    neg = torch.bmm(out[noise], u.unsqueeze(-1)).squeeze(-1)  # [B, K]
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def train_signal2vec(seqs: Sequence[np.ndarray], vocab_size: int, cfg: Signal2VecConfig | None = None) -> Signal2Vec:
    """Train skip-gram vectors on token sequences with ids in ``[0, vocab_size)``.

    Runs on one CPU thread (restored afterwards): a step's tensors are a few hundred KB, where
    intra-op threads only add synchronisation (measured 3.5x slower with 2 threads on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(seqs, vocab_size, cfg or Signal2VecConfig())
    finally:
        torch.set_num_threads(threads)


def _train(seqs: Sequence[np.ndarray], vocab_size: int, cfg: Signal2VecConfig) -> Signal2Vec:
    if cfg.problems():
        raise ConfigError(cfg.problems())
    seqs = [np.asarray(s, dtype=np.int64) for s in seqs]
    counts = np.bincount(np.concatenate(seqs), minlength=vocab_size) if seqs else np.zeros(vocab_size)
    if len(counts) > vocab_size or counts.sum() == 0:
        raise DataError(f"Signal2Vec corpus: {int(counts.sum())} tokens, ids must lie in [0, {vocab_size})")
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    inp = ((torch.rand(vocab_size, cfg.dim, generator=gen) - 0.5) / cfg.dim).requires_grad_(True)
    out = torch.zeros(vocab_size, cfg.dim, requires_grad=True)
    noise = torch.from_numpy(counts.astype(np.float64) ** 0.75).float()  # unigram^0.75
    keep = keep_probability(counts.astype(np.float64), cfg.subsample)
    opt = torch.optim.Adam([inp, out], lr=cfg.lr)
    pairs_per_epoch = len(skipgram_pairs(seqs, cfg.window, keep, np.random.default_rng(cfg.seed)))  # for the schedule
    total = max(1, cfg.epochs * math.ceil(pairs_per_epoch / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - 0.9 * min(1.0, s / total))
    losses: list[float] = []
    t0 = time.time()
    for epoch in range(cfg.epochs):
        pairs = torch.from_numpy(skipgram_pairs(seqs, cfg.window, keep, rng))
        losses.append(_epoch(pairs[torch.randperm(len(pairs), generator=gen)], inp, out, noise, opt, sched, cfg, gen))
        log.info("signal2vec epoch %d/%d: %d pairs, loss %.4f", epoch + 1, cfg.epochs, len(pairs), losses[-1])
    meta = {"epoch_losses": losses, "pairs_per_epoch": pairs_per_epoch, "tokens": int(counts.sum()),
            "sequences": len(seqs), "seconds": round(time.time() - t0, 2)}  # fmt: skip
    return Signal2Vec(inp.detach().clone(), out.detach().clone(), cfg, meta)


def _epoch(pairs, inp, out, noise_dist, opt, sched, cfg: Signal2VecConfig, gen: torch.Generator) -> float:
    """One pass over shuffled (centre, context) pairs; returns the mean loss per pair."""
    total, n = 0.0, 0
    for b in progress(range(0, len(pairs), cfg.batch_size), desc="signal2vec epoch", leave=False):
        batch = pairs[b : b + cfg.batch_size]
        noise = torch.multinomial(noise_dist, len(batch) * max(cfg.negatives, 1), True, generator=gen)
        loss = sgns_loss(inp, out, batch[:, 0], batch[:, 1], noise.view(len(batch), -1)[:, : cfg.negatives])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total, n = total + loss.item() * len(batch), n + len(batch)
    return total / max(1, n)


def pretrain_from_store(
    store, tokenizer, out: str | Path, cfg: Signal2VecConfig | None = None, num_samples: int = 0
) -> Signal2Vec:
    """Encode a store's segments with ``tokenizer``, train Signal2Vec, save it to ``out``."""
    seqs = corpus_from_store(store, tokenizer, num_samples, seed=(cfg or Signal2VecConfig()).seed)
    s2v = train_signal2vec(seqs, tokenizer.vocab_size, cfg)
    s2v.meta.update(corpus=str(store.path), tokenizer_fingerprint=vocab_fingerprint(tokenizer.token_strings()))
    s2v.save(out)
    log.info("saved Signal2Vec (%d x %d) to %s", s2v.vocab_size, s2v.dim, out)
    return s2v


@dataclass
class Signal2VecPretrainConfig(PretrainerOptions):
    """Skip-gram vectors of ECG-Byte tokens, for the signal2vec encoder (``ecg-bench pretrain signal2vec``)."""

    store: str = field(default="", metadata={"required": True})
    """Segment store folder (the corpus)."""
    tokenizer: str = field(default="", metadata={"required": True})
    """ECG-Byte tokenizer JSON."""
    out: str = field(default="", metadata={"required": True})
    """Output .safetensors file (a .json is written beside it)."""
    num_samples: int = 0
    """Random segments to use (0 = all)."""
    skipgram: Signal2VecConfig = field(default_factory=Signal2VecConfig)
    """The skip-gram objective (``--skipgram.dim``, ``--skipgram.window``, ...)."""


def run(opts: Signal2VecPretrainConfig) -> str:
    """Train Signal2Vec on ``opts.store`` with ``opts.tokenizer`` and save it to ``opts.out``; returns a summary."""
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.ecg_byte import ECGByteTokenizer

    missing = [f"signal2vec pretraining needs {name} (got an empty value)" for name in ("store", "tokenizer", "out")
               if not getattr(opts, name)]  # fmt: skip
    if missing:
        raise ConfigError(missing)
    s2v = pretrain_from_store(SegmentStore(opts.store), ECGByteTokenizer.load(opts.tokenizer), opts.out, opts.skipgram,
                              opts.num_samples)  # fmt: skip
    return (
        f"Signal2Vec {s2v.vocab_size} x {s2v.dim}, loss per epoch {[round(x, 4) for x in s2v.meta['epoch_losses']]} -> {opts.out}"
    )


PRETRAINERS.register("signal2vec", options=Signal2VecPretrainConfig)(
    Pretrainer(Signal2VecPretrainConfig, run, "skip-gram vectors of ECG-Byte tokens, for the signal2vec encoder")
)
