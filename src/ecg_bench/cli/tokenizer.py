"""``ecg-bench tokenizer train | verify | encode | import``: the ECG-Byte tokenizer from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecg_bench.errors import ECGBenchError
from ecg_bench.logging_utils import progress

ACTIONS = ("train", "verify", "encode", "import")


@dataclass
class TokenizerCommand:
    """``ecg-bench tokenizer ACTION``; each action uses the options it needs."""

    action: str = ""
    """train: learn BPE on a store sample; verify: round trip, reconstruction error and compression; encode:
    print/write ids; import: convert an original pickle."""
    store: str = ""
    """Segment store folder (train, verify, encode)."""
    tokenizer: str = ""
    """Tokenizer JSON file to use (verify, encode)."""
    out: str = ""
    """Output file: tokenizer JSON (train, import) or JSONL of ids (encode)."""
    pickle: str = ""
    """Original ECG-Bench tokenizer pickle to import (read safely)."""
    vocab_size: int = 5000
    """Number of token ids incl. the 26 base symbols (train)."""
    num_samples: int = 10000
    """Segments sampled at random for train/verify; 0 = all segments."""
    seed: int = 0
    """Random seed of the segment sample (train, verify)."""
    scope: str = "segment"
    """Normalize with one min/max per segment (original) or per lead (train, import)."""
    clip_percentiles: list[float] = field(default_factory=list)
    """Clip each segment to these two percentiles (LO HI) before min-max (train, import); empty = no clipping."""
    segments: list[int] = field(default_factory=list)
    """Segment indices to encode (empty = all)."""
    batch_size: int = 512
    """Segments encoded together per batch (verify, encode)."""

    def problems(self) -> list[str]:
        p = [] if self.action in ACTIONS else [f"tokenizer ACTION must be one of {', '.join(ACTIONS)}, got {self.action!r}"]
        if self.scope not in ("segment", "lead"):
            p.append(f"tokenizer --scope must be segment or lead, got {self.scope!r}")
        if self.clip_percentiles and len(self.clip_percentiles) != 2:
            p.append(f"tokenizer --clip_percentiles takes two numbers (LO HI), got {self.clip_percentiles}")
        if self.batch_size < 1:
            p.append(f"tokenizer --batch_size must be >= 1, got {self.batch_size}")
        return p


def run_tokenizer_command(args: TokenizerCommand) -> int:
    """Dispatch ``args.action``; missing options are reported as errors naming the option."""
    handlers: dict[str, Callable[[TokenizerCommand], int]] = {
        "train": _train,
        "verify": _verify,
        "encode": _encode,
        "import": _import,
    }
    return handlers[args.action](args)


def _need(args: TokenizerCommand, *names: str) -> None:
    missing = [f"--{n}" for n in names if not getattr(args, n)]
    if missing:
        raise ECGBenchError(f"tokenizer {args.action} needs {' '.join(missing)}")


def _symbol_config(args: TokenizerCommand):
    from ecg_bench.ecg_byte import SymbolConfig

    clip = tuple(args.clip_percentiles) if args.clip_percentiles else None
    return SymbolConfig(scope=args.scope, clip_percentiles=clip)


def _train(args: TokenizerCommand) -> int:
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.ecg_byte import train_tokenizer

    _need(args, "store", "out")
    store = SegmentStore(args.store)
    tok = train_tokenizer(store, args.vocab_size, args.num_samples, args.seed, symbols=_symbol_config(args))
    path = tok.save(args.out)
    print(
        f"tokenizer {path}: {tok.vocab_size} ids from {tok.meta['num_samples']} segments of {store.path} "
        f"in {tok.meta['train_seconds']:.1f} s"
    )
    return 0


def _import(args: TokenizerCommand) -> int:
    from ecg_bench.ecg_byte import import_pickle

    _need(args, "pickle", "out")
    tok = import_pickle(args.pickle, symbols=_symbol_config(args))
    path = tok.save(args.out)
    print(f"tokenizer {path}: {tok.vocab_size} ids imported from {args.pickle} (original ids kept as legacy_ids)")
    return 0


def _sample(n: int, num_samples: int, seed: int) -> np.ndarray:
    if num_samples <= 0 or num_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=num_samples, replace=False))


def _verify(args: TokenizerCommand) -> int:
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.ecg_byte import ECGByteTokenizer

    _need(args, "tokenizer", "store")
    tok, store = ECGByteTokenizer.load(args.tokenizer), SegmentStore(args.store)
    idx = _sample(len(store), args.num_samples, args.seed)
    n_sym = n_tok = mismatches = 0
    worst_steps = worst_mv = 0.0
    for b in progress(range(0, len(idx), args.batch_size), desc="verifying", unit="batch", leave=False):
        signals = store.signals(idx[b : b + args.batch_size])
        ids, params = tok.encode_signals(signals)
        for j, (seg_ids, sig) in enumerate(zip(ids, signals)):
            symbols = tok.symbolize(sig)
            mismatches += int(tok.decode(seg_ids) != symbols)
            rec = tok.reconstruct(seg_ids, params[j])
            step = tok.quantization_step(params[j]).reshape(-1, 1)
            err = np.abs(rec - sig)
            worst_mv = max(worst_mv, float(err.max()))
            worst_steps = max(worst_steps, float((err / step).max()))
            n_sym, n_tok = n_sym + len(symbols), n_tok + len(seg_ids)
    ok = mismatches == 0 and (worst_steps <= 1.0 or tok.symbols.clip_percentiles is not None)
    print(f"tokenizer {args.tokenizer} on {len(idx)} segments of {store.path}:")
    print(f"  round trip decode(encode(symbols)) == symbols: {len(idx) - mismatches}/{len(idx)}")
    print(
        f"  reconstruction error: max {worst_mv:.4f} mV = {worst_steps:.3f} quantization steps (bound 1 step; bin centres: 0.5)"
    )
    print(f"  compression: {n_sym} symbols -> {n_tok} tokens = {n_sym / max(n_tok, 1):.2f} symbols/token")
    print("verify: OK" if ok else "verify: FAILED")
    return 0 if ok else 1


def _encode(args: TokenizerCommand) -> int:
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.ecg_byte import ECGByteTokenizer

    _need(args, "tokenizer", "store")
    tok, store = ECGByteTokenizer.load(args.tokenizer), SegmentStore(args.store)
    out = open(Path(args.out), "w") if args.out else None  # noqa: SIM115 - closed below
    try:
        for i, ids, params in tok.iter_encode_store(store, args.segments or None, args.batch_size):
            if out:
                out.write(json.dumps({"segment_id": i, "ids": ids.tolist(), "norm": params.to_dict()}) + "\n")
            else:
                sys.stdout.write(f"{i}\t{' '.join(map(str, ids.tolist()))}\n")
    finally:
        if out:
            out.close()
    if out:
        print(f"wrote ids of {len(args.segments) if args.segments else len(store)} segments to {args.out}")
    return 0
