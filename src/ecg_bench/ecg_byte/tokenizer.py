"""ECGByteTokenizer: ECG segment -> symbols 'a'..'z' -> BPE token ids, and back; one JSON file.

Ids: ``0..25`` are the single symbols 'a'..'z'; ``26..vocab_size-1`` are merged strings in merge
order (``merges[k] = (left, right)`` for id ``26 + k``). Encoding is greedy longest match, as in
the original ECG-Bench (see ``greedy.py``). A tokenizer imported from an original pickle also keeps
``legacy_ids`` (the original id of each of our ids); ``to_legacy_ids`` maps encodings back.

File format (``format_version`` 1, plain JSON, loading never executes code)::

    {"format": "ecg-byte-tokenizer", "format_version": 1, "alphabet": "ab...z",
     "vocab": ["a", ..., "z", "kk", ...], "merges": [[10, 10], ...],
     "symbols": {"scope": "segment", "eps": 1e-06, "clip_percentiles": null},
     "leads": ["I", ...] | null, "fs": 250.0 | null, "segment_len": 1250 | null,
     "legacy_ids": [97, ...] | null, "meta": {...training or import facts...}}

Limits (checked before anything large is built; the greedy matcher's trie costs ~420 bytes per
symbol): at most ``MAX_VOCAB_SIZE`` ids, no token longer than ``MAX_TOKEN_SYMBOLS`` symbols, at most
``MAX_TOTAL_SYMBOLS`` symbols over all tokens, a file of at most ``MAX_FILE_BYTES`` nested at most
``MAX_NESTING`` levels. Trained tokens are at most 1,024 symbols (``bpe.train_merges``); the shipped
1,000-merge original tokenizer has 17,037 symbols, the longest 192.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ecg_bench.ecg_byte.greedy import GreedyMatcher
from ecg_bench.ecg_byte.symbols import (
    ALPHABET,
    NUM_LEVELS,
    NormParams,
    SymbolConfig,
    desymbolize,
    levels_to_str,
    normalize,
    quantize,
    str_to_levels,
    symbolize,
)
from ecg_bench.errors import DataError, require_file
from ecg_bench.limits import load_json_file

FORMAT = "ecg-byte-tokenizer"
FORMAT_VERSION = 1

MAX_VOCAB_SIZE = 262_144
"""Most token ids a tokenizer may have (the original ECG-Bench used a few thousand)."""
MAX_TOKEN_SYMBOLS = 65_536
"""Longest token, in symbols."""
MAX_TOTAL_SYMBOLS = 2_097_152
"""Most symbols over all tokens (bounds the greedy matcher's trie to ~1 GB)."""
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest tokenizer JSON file read."""
MAX_NESTING = 16
"""Deepest nesting of a tokenizer JSON file (``meta`` included)."""


def check_vocab_bounds(vocab: Sequence[Any]) -> None:
    """Refuse (DataError) a vocabulary past ``MAX_VOCAB_SIZE`` ids, ``MAX_TOKEN_SYMBOLS`` per token or
    ``MAX_TOTAL_SYMBOLS`` in all, naming the first offending token id and its length; O(len(vocab))."""
    if len(vocab) > MAX_VOCAB_SIZE:
        raise DataError(f"'vocab' has {len(vocab):,} ids, more than the {MAX_VOCAB_SIZE:,} allowed")
    total = 0
    for i, s in enumerate(vocab):
        if not isinstance(s, str):
            raise DataError(f"'vocab'[{i}] is a {type(s).__name__}, expected a string of symbols 'a'..'z'")
        if len(s) > MAX_TOKEN_SYMBOLS:
            raise DataError(f"token id {i} has {len(s):,} symbols, more than the {MAX_TOKEN_SYMBOLS:,} allowed")
        total += len(s)
        if total > MAX_TOTAL_SYMBOLS:
            raise DataError(f"the tokens up to id {i} have {total:,} symbols in all, more than the {MAX_TOTAL_SYMBOLS:,} allowed")


@dataclass
class ECGByteTokenizer:
    """Symbolic ECG tokenizer (ECG-Byte). Build with ``train_tokenizer``, ``load`` or ``import_pickle``."""

    vocab: list[str]
    """Id -> symbol string; ids 0..25 are 'a'..'z'."""
    merges: list[tuple[int, int]]
    """(left id, right id) for each id from 26 on: vocab[26 + k] == vocab[l] + vocab[r]."""
    symbols: SymbolConfig = field(default_factory=SymbolConfig)
    """How signals become symbols (normalization scope, eps, optional percentile clipping)."""
    leads: tuple[str, ...] | None = None
    """Lead order of the training corpus (rows of every encoded segment), if known."""
    fs: float | None = None
    """Sampling rate (Hz) of the training corpus, if known."""
    segment_len: int | None = None
    """Samples per lead of the training corpus' segments, if known."""
    legacy_ids: list[int] | None = None
    """For imported original tokenizers: the original id of each id."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Facts about training/import (corpus, samples, seed, seconds, source file)."""

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of ECG token ids, including the 26 base symbols."""
        return len(self.vocab)

    def token_strings(self) -> list[str]:
        """The symbol string each id stands for (index = id)."""
        return list(self.vocab)

    @cached_property
    def _matcher(self) -> GreedyMatcher:
        return GreedyMatcher([str_to_levels(s) for s in self.vocab])

    @cached_property
    def _token_levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Concatenated levels of all tokens, with each token's start and length (vectorized decode)."""
        lens = np.fromiter((len(s) for s in self.vocab), dtype=np.int64, count=len(self.vocab))
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        return str_to_levels("".join(self.vocab)), starts, lens

    # ------------------------------------------------------------------ symbols <-> ids

    def encode(self, symbols: str) -> list[int]:
        """Symbol string -> token ids (greedy longest match)."""
        return self._matcher.encode_many([str_to_levels(symbols)])[0].tolist()

    def encode_batch(self, symbol_strings: Sequence[str]) -> list[np.ndarray]:
        """Many symbol strings -> int32 id arrays, encoded together (much faster than one by one)."""
        return self._matcher.encode_many([str_to_levels(s) for s in symbol_strings])

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Token ids -> symbol string (exact inverse of ``encode``)."""
        return levels_to_str(self.decode_levels(ids))

    def decode_levels(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids -> levels 0..25 (uint8), vectorized."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        bad = np.flatnonzero((ids < 0) | (ids >= self.vocab_size))
        if bad.size:
            raise DataError(f"token id {int(ids[bad[0]])} at position {int(bad[0])} is outside [0, {self.vocab_size})")
        flat, starts, lens = self._token_levels
        n = lens[ids]
        # position j of the output reads flat[starts[id] + offset within the token]
        offsets = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return flat[np.repeat(starts[ids], n) + offsets]

    def to_legacy_ids(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        """Our ids -> the original ECG-Bench ids (imported tokenizers only)."""
        if self.legacy_ids is None:
            raise DataError("this tokenizer was not imported from an original ECG-Bench pickle; it has no legacy ids")
        table = np.asarray(self.legacy_ids, dtype=np.int64)
        return table[np.asarray(ids, dtype=np.int64)].tolist()

    # ------------------------------------------------------------------ signals

    def symbolize(self, signal: np.ndarray) -> str:
        """One segment ``[leads, L]`` (mV) -> symbol string, leads one after the other."""
        return symbolize(signal, self.symbols)[0]

    def symbolize_with_params(self, signal: np.ndarray) -> tuple[str, NormParams]:
        """Like ``symbolize``, plus the normalization parameters ``reconstruct`` needs."""
        return symbolize(signal, self.symbols)

    def encode_signal(self, signal: np.ndarray) -> list[int]:
        """One segment ``[leads, L]`` -> token ids."""
        return self.encode(self.symbolize(signal))

    def encode_signals(self, signals: np.ndarray) -> tuple[list[np.ndarray], NormParams]:
        """Segments ``[n, leads, L]`` -> one int32 id array per segment, plus batched parameters."""
        if np.ndim(signals) != 3:
            raise DataError(f"encode_signals expects [n, leads, L] segments, got shape {np.shape(signals)}")
        norm, params = normalize(signals, self.symbols)
        levels = quantize(norm).reshape(len(norm), -1)
        return self._matcher.encode_many(list(levels)), params

    def reconstruct(self, ids_or_symbols: str | Sequence[int] | np.ndarray, params: NormParams) -> np.ndarray:
        """Token ids (or a symbol string) of one segment -> ``[leads, L]`` float32 mV.

        Each sample becomes the centre of its level's bin: error <= (max - min + eps) / 52 for every
        sample inside the (clipped) range, i.e. half a quantization step.
        """
        levels = str_to_levels(ids_or_symbols) if isinstance(ids_or_symbols, str) else self.decode_levels(ids_or_symbols)
        return desymbolize(levels, params, self.symbols)

    def quantization_step(self, params: NormParams) -> np.ndarray:
        """One quantization step in mV for each normalization group: (max - min + eps) / 26."""
        return (np.asarray(params.maxs) - np.asarray(params.mins) + self.symbols.eps) / NUM_LEVELS

    def iter_encode_store(
        self, store, indices: Sequence[int] | None = None, batch_size: int = 512
    ) -> Iterator[tuple[int, np.ndarray, NormParams]]:
        """Yield ``(segment index, ids, params)`` for segments of a SegmentStore (all by default), batch by batch."""
        indices = list(range(len(store))) if indices is None else [int(i) for i in indices]
        for b in range(0, len(indices), batch_size):
            chunk = indices[b : b + batch_size]
            ids, params = self.encode_signals(store.signals(chunk))
            for j, i in enumerate(chunk):
                yield i, ids[j], params[j]

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``save`` writes."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "alphabet": ALPHABET,
            "vocab": list(self.vocab),
            "merges": [list(m) for m in self.merges],
            "symbols": self.symbols.to_dict(),
            "leads": list(self.leads) if self.leads is not None else None,
            "fs": self.fs,
            "segment_len": self.segment_len,
            "legacy_ids": self.legacy_ids,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one JSON file (written to a temporary name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ECGByteTokenizer":
        """Read a tokenizer JSON file written by ``save`` (validated; errors name the file and field)."""
        path = require_file(path, "ECG-Byte tokenizer")
        doc = load_json_file(
            path,
            "JSON ECG-Byte tokenizer",
            max_bytes=MAX_FILE_BYTES,
            max_depth=MAX_NESTING,
            max_nodes=4 * MAX_VOCAB_SIZE + 1_000_000,
            max_string=MAX_FILE_BYTES,  # tokens are checked by check_vocab_bounds, naming the id
        )
        try:
            return cls.from_dict(doc)
        except (DataError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "ECGByteTokenizer":
        """Build from the document ``to_dict`` returns, checking format, version and alphabet."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise DataError(f"'format' must be {FORMAT!r}, got {doc.get('format') if isinstance(doc, dict) else doc!r}")
        if doc.get("format_version") != FORMAT_VERSION:
            raise DataError(f"'format_version' {doc.get('format_version')!r} is not supported (this code reads {FORMAT_VERSION})")
        if doc.get("alphabet") != ALPHABET:
            raise DataError(f"'alphabet' must be {ALPHABET!r}, got {doc.get('alphabet')!r}")
        if not isinstance(doc.get("vocab"), list) or not isinstance(doc.get("merges"), list):
            raise DataError("'vocab' and 'merges' must be lists")
        check_vocab_bounds(doc["vocab"])  # before any list, string or trie is built from them
        leads = doc.get("leads")
        return cls(
            vocab=[str(s) for s in doc["vocab"]],
            merges=[(int(a), int(b)) for a, b in doc["merges"]],
            symbols=SymbolConfig.from_dict(doc.get("symbols") or {}),
            leads=tuple(leads) if leads is not None else None,
            fs=float(doc["fs"]) if doc.get("fs") is not None else None,
            segment_len=int(doc["segment_len"]) if doc.get("segment_len") is not None else None,
            legacy_ids=[int(i) for i in doc["legacy_ids"]] if doc.get("legacy_ids") is not None else None,
            meta=dict(doc.get("meta") or {}),
        )

    def _validate(self) -> None:
        check_vocab_bounds(self.vocab)
        if self.vocab[:NUM_LEVELS] != list(ALPHABET):
            raise DataError(f"'vocab' must start with the 26 symbols {ALPHABET!r} as ids 0..25")
        if len(self.merges) != len(self.vocab) - NUM_LEVELS:
            raise DataError(
                f"'merges' has {len(self.merges)} entries, expected one per merged id ({len(self.vocab) - NUM_LEVELS})"
            )
        seen: set[str] = set()
        for i, s in enumerate(self.vocab):
            if s in seen or not s or s.strip(ALPHABET):
                raise DataError(f"'vocab'[{i}] = {s[:40]!r} is empty, repeated, or has characters outside 'a'..'z'")
            seen.add(s)
        for k, (left, right) in enumerate(self.merges):
            tid = NUM_LEVELS + k
            if not (0 <= left < tid and 0 <= right < tid) or self.vocab[left] + self.vocab[right] != self.vocab[tid]:
                raise DataError(f"'merges'[{k}] = ({left}, {right}) does not spell 'vocab'[{tid}] = {self.vocab[tid][:40]!r}")
        if self.legacy_ids is not None and (
            len(self.legacy_ids) != len(self.vocab) or len(set(self.legacy_ids)) != len(self.legacy_ids)
        ):
            raise DataError(f"'legacy_ids' must hold {len(self.vocab)} distinct ids, one per vocab entry")
