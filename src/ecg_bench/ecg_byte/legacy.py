"""Import tokenizers pickled by the original ECG-Bench, without ever running code from the file.

The original saves ``pickle.dump((vocab, merges))`` with ``vocab: dict[int, str]`` (ids 0..255 are
bytes, 'a'..'z' = 97..122, merged tokens 256, 257, ... in merge order) and ``merges: list[(list[int],
int)]`` (the byte sequence each merged id spells, and the id). We read it with an unpickler whose
``find_class`` refuses every global: builtin containers, ints and strings need none, while anything
that could call code (``os.system`` via GLOBAL/STACK_GLOBAL + REDUCE, any class instance) is refused
with a DataError naming the file.

Our ids are compact: 'a'..'z' -> 0..25, then the original's merged ids in order -> 26, 27, ...;
``legacy_ids`` keeps the original id of each, so ``to_legacy_ids(encode(s))`` equals the original's
``encode_symbol(s, merges)``. Byte ids other than 'a'..'z' never occur in ECG symbol strings and
are left out (so is an earlier id that spells the same string as a later one: the original's trie
lets the later one win).

Bounds, checked before anything is built from the file: at most ``MAX_PICKLE_BYTES`` bytes; the
loaded structure is walked iteratively (``limits.check_structure``) with every reference to a shared
container counted, so a tiny pickle whose lists share references (2^30 nodes from 229 bytes) is
refused after at most ``NODES_PER_BYTE`` nodes per byte of the file instead of being expanded; nesting
past ``MAX_NESTING`` and strings past ``MAX_TOKEN_SYMBOLS`` are refused; the vocabulary limits of
``ECGByteTokenizer`` apply. Messages show type names and ``reprlib``-shortened values only.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from ecg_bench.ecg_byte.symbols import ALPHABET, NUM_LEVELS, SymbolConfig
from ecg_bench.ecg_byte.tokenizer import MAX_TOKEN_SYMBOLS, MAX_TOTAL_SYMBOLS, MAX_VOCAB_SIZE, ECGByteTokenizer
from ecg_bench.errors import DataError, require_file
from ecg_bench.limits import check_structure, read_bytes_capped, short_repr
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

MAX_PICKLE_BYTES = 64 * 1024 * 1024
"""Largest pickle read (the shipped 1,000-merge original is 66 kB)."""
MAX_NESTING = 8
"""(vocab, merges) nests 4 levels: tuple > list > (list, int) > int."""
NODES_PER_BYTE = 4
"""A pickle without shared containers spends at least one byte per value; more than this many values
per byte of the file can only come from shared references (refused)."""


class _ContainersOnly(pickle.Unpickler):
    """Unpickler that resolves no global at all: only builtin containers and literals load."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}: only builtin containers are allowed")


def read_legacy_pickle(path: str | Path) -> tuple[dict[int, str], list[tuple[list[int], int]]]:
    """Safely read ``(vocab, merges)`` from an original ECG-Bench tokenizer pickle, checking sizes and types."""
    path = require_file(path, "ECG-Bench tokenizer pickle")
    data = read_bytes_capped(path, MAX_PICKLE_BYTES, "tokenizer pickle")
    try:
        obj = _ContainersOnly(io.BytesIO(data)).load()
    except Exception as e:  # any unpickling failure (RecursionError included) is a bad or hostile file, not a bug here
        raise DataError(f"{path}: not loaded, not a plain (vocab, merges) pickle: {type(e).__name__}: {str(e)[:200]}") from None
    max_nodes = min(NODES_PER_BYTE * len(data) + 1024, 5 * (MAX_VOCAB_SIZE + 256) + MAX_TOTAL_SYMBOLS)
    check_structure(obj, str(path), max_depth=MAX_NESTING, max_nodes=max_nodes, max_string=MAX_TOKEN_SYMBOLS)
    if not (isinstance(obj, tuple | list) and len(obj) == 2 and isinstance(obj[0], dict) and isinstance(obj[1], list)):
        raise DataError(f"{path}: expected a pickled (vocab: dict, merges: list) pair, got {type(obj).__name__}")
    vocab, merges = obj
    if len(vocab) > MAX_VOCAB_SIZE + 256 or len(merges) > MAX_VOCAB_SIZE:
        raise DataError(
            f"{path}: {len(vocab):,} vocab entries and {len(merges):,} merges; at most {MAX_VOCAB_SIZE:,} are allowed"
        )
    for k, v in vocab.items():
        if not (isinstance(k, int) and isinstance(v, str)):
            raise DataError(f"{path}: vocab must map int ids to str, found {type(k).__name__} -> {type(v).__name__}")
    for i, m in enumerate(merges):
        ok = isinstance(m, tuple | list) and len(m) == 2 and isinstance(m[0], list) and isinstance(m[1], int)
        if not ok or not all(isinstance(b, int) and 0 <= b < 256 for b in m[0]):
            raise DataError(f"{path}: merges[{i}] must be (list of byte values, int id), got {short_repr(m)}")
    return vocab, [(list(seq), int(tid)) for seq, tid in merges]


def import_pickle(path: str | Path, symbols: SymbolConfig | None = None) -> ECGByteTokenizer:
    """Convert an original ECG-Bench pickled tokenizer into an ``ECGByteTokenizer`` (see module doc)."""
    vocab, merges = read_legacy_pickle(path)
    strings = {tid: bytes(seq).decode("latin-1") for seq, tid in merges}
    for tid, s in strings.items():
        if tid in vocab and not s.strip(ALPHABET) and vocab[tid] != s:  # non-ASCII bytes print as '<200>'
            raise DataError(f"{path}: vocab[{tid}] = {short_repr(vocab[tid])} but merges spell {short_repr(s)}")
    last_id = {s: tid for tid, s in sorted(strings.items())}  # the later id wins, as in the original trie
    kept = [tid for tid, s in sorted(strings.items()) if last_id[s] == tid and s and not s.strip(ALPHABET)]
    out_vocab, legacy = list(ALPHABET), [ord(c) for c in ALPHABET]
    ids = {s: i for i, s in enumerate(out_vocab)}
    lengths = {1}
    out_merges = []
    for tid in kept:
        s = strings[tid]
        out_merges.append(_split(s, ids, lengths, path, tid))
        lengths.add(len(s))
        ids[s] = len(out_vocab)
        out_vocab.append(s)
        legacy.append(tid)
    dropped = len(merges) - len(kept)
    if dropped:
        log.warning("%s: %d merged ids left out (symbols outside 'a'..'z' or spelled again by a later id)", path, dropped)
    log.info("imported %s: %d ids (%d merges)", path, len(out_vocab), len(out_vocab) - NUM_LEVELS)
    return ECGByteTokenizer(
        vocab=out_vocab,
        merges=out_merges,
        symbols=symbols or SymbolConfig(),
        legacy_ids=legacy,
        meta={"imported_from": str(path), "legacy_vocab_size": len(vocab), "legacy_merges": len(merges)},
    )


def _split(s: str, ids: dict[str, int], lengths: set[int], path: Path, tid: int) -> tuple[int, int]:
    """A (left, right) pair of earlier ids that spells ``s`` (BPE built it from two earlier tokens).

    Only split points where both halves have the length of some earlier token are tried (``lengths``),
    so a long token costs a few slices, not one per symbol."""
    n = len(s)
    for k in sorted(k for k in lengths if k < n and n - k in lengths):
        left, right = ids.get(s[:k]), ids.get(s[k:])
        if left is not None and right is not None:
            return left, right
    raise DataError(f"{path}: merged id {tid} ({short_repr(s)}) is not the join of two earlier tokens")
