"""Train an ECG-Byte tokenizer on a random sample of a segment store (or an array of segments)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ecg_bench.ecg_byte.bpe import train_merges
from ecg_bench.ecg_byte.symbols import NUM_LEVELS, SymbolConfig, levels_to_str, normalize, quantize
from ecg_bench.ecg_byte.tokenizer import ECGByteTokenizer
from ecg_bench.errors import ConfigError
from ecg_bench.logging_utils import get_logger, progress

log = get_logger(__name__)


def _signals_source(store_or_signals: Any) -> tuple[int, Any, dict[str, Any]]:
    """(number of segments, reader of [n, leads, L] by indices, corpus facts) for a store or an array."""
    if hasattr(store_or_signals, "signals") and hasattr(store_or_signals, "meta"):
        store = store_or_signals
        meta = store.meta
        facts = {
            "corpus": str(store.path),
            "dataset": meta.get("dataset"),
            "leads": meta.get("leads"),
            "fs": meta.get("fs"),
            "segment_len": meta.get("segment_len"),
        }
        return len(store), store.signals, facts
    arr = np.asarray(store_or_signals)
    if arr.ndim != 3:
        raise ValueError(f"train_tokenizer expects a SegmentStore or [n, leads, L] signals, got shape {arr.shape}")
    return len(arr), lambda idx: arr[np.asarray(idx)], {"corpus": f"array {tuple(arr.shape)}", "segment_len": arr.shape[2]}


def sample_symbol_strings(
    store_or_signals: Any, num_samples: int, seed: int, symbols: SymbolConfig, batch_size: int = 256
) -> Iterator[str]:
    """Symbol strings of ``num_samples`` segments drawn without replacement (all if fewer), in store order."""
    n, read, _ = _signals_source(store_or_signals)
    k = n if num_samples <= 0 else min(num_samples, n)
    indices = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    for b in progress(range(0, k, batch_size), desc="symbolizing", unit="batch", leave=False):
        norm, _ = normalize(read(indices[b : b + batch_size]), symbols)
        for levels in quantize(norm):
            yield levels_to_str(levels)


def train_tokenizer(
    store_or_signals: Any,
    vocab_size: int = 5000,
    num_samples: int = 10000,
    seed: int = 0,
    symbols: SymbolConfig | None = None,
    chunk_len: int = 1024,
) -> ECGByteTokenizer:
    """Train ECG-Byte BPE on ``num_samples`` random segments (0 = all) of a SegmentStore or ``[n, leads, L]`` array.

    ``vocab_size`` counts every id (26 base symbols + merges); fewer ids result when the corpus runs
    out of pairs. ``chunk_len``: see ``bpe.py``.
    """
    if vocab_size < NUM_LEVELS:
        raise ConfigError([f"vocab_size must be at least {NUM_LEVELS} (the base symbols), got {vocab_size}"])
    symbols = symbols or SymbolConfig()
    n, _, facts = _signals_source(store_or_signals)
    if n == 0:
        raise ValueError(f"cannot train an ECG-Byte tokenizer on an empty corpus ({facts['corpus']})")
    t0 = time.perf_counter()
    strings = sample_symbol_strings(store_or_signals, num_samples, seed, symbols)
    vocab, merges = train_merges(strings, vocab_size - NUM_LEVELS, chunk_len=chunk_len)
    seconds = time.perf_counter() - t0
    used = n if num_samples <= 0 else min(num_samples, n)
    log.info("ECG-Byte tokenizer: %d ids from %d segments of %s in %.1f s", len(vocab), used, facts["corpus"], seconds)
    leads = facts.get("leads")
    return ECGByteTokenizer(
        vocab=vocab,
        merges=merges,
        symbols=symbols,
        leads=tuple(leads) if leads else None,
        fs=float(facts["fs"]) if facts.get("fs") else None,
        segment_len=int(facts["segment_len"]) if facts.get("segment_len") else None,
        meta={
            "corpus": facts["corpus"],
            "dataset": facts.get("dataset"),
            "num_samples": used,
            "seed": seed,
            "vocab_size_requested": vocab_size,
            "chunk_len": chunk_len,
            "train_seconds": round(seconds, 3),
        },
    )
