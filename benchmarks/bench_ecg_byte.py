"""ECG-Byte tokenizer: BPE training time, encode throughput and compression (symbols per token).

Run by hand (never timed in tests), e.g.:

    python benchmarks/bench_ecg_byte.py --segments 1000 --train-samples 500 --vocab-sizes 1000 5000 10000
    python benchmarks/bench_ecg_byte.py --smoke   # seconds: 8 segments, one 300-id tokenizer (tests/test_benchmarks.py)

Corpus: a synthetic segment store built in a temporary folder (``--segments`` 10 s records resampled
to 250 Hz, one 2,500-sample segment each: 12 x 2,500 = 30,000 symbols per segment); the tokenizers
train on ``--train-samples`` of them and are measured on the others (held out). Also measured on the
10 real PTB-XL records in ../shared/data/ptbxl (500 Hz, 12 x 5,000 = 60,000 symbols each), with the
original ECG-Bench tokenizer imported from ../shared/data/ecg-bench-artifacts, and against the
plain-Python greedy encoder (``greedy_reference``) on a few segments.

Prints a table and one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ecg_bench.data.sources.synthetic import generate_records
from ecg_bench.data.store import SegmentStore, build_store
from ecg_bench.ecg_byte import ECGByteTokenizer, import_pickle, train_tokenizer
from ecg_bench.ecg_byte.greedy import greedy_reference
from ecg_bench.logging_utils import setup_logging

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECG_BENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))


def encode_speed(tok: ECGByteTokenizer, signals: np.ndarray, batch_size: int) -> dict:
    """Batched encode of ``signals`` [n, 12, L]: symbols/s, tokens/s and symbols per token."""
    t0, c0 = time.perf_counter(), time.process_time()
    n_tokens = 0
    for b in range(0, len(signals), batch_size):
        ids, _ = tok.encode_signals(signals[b : b + batch_size])
        n_tokens += sum(len(x) for x in ids)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "segments": len(signals),
        "symbols": int(signals.size),
        "tokens": n_tokens,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),  # single-threaded numpy: what an idle core would take
        "symbols_per_cpu_s": round(signals.size / cpu),
        "symbols_per_s": round(signals.size / seconds),
        "tokens_per_s": round(n_tokens / seconds),
        "symbols_per_token": round(signals.size / n_tokens, 3),
    }


def single_latency(tok: ECGByteTokenizer, signals: np.ndarray, n: int = 20) -> float:
    """Median milliseconds of ``encode_signal`` on one segment (the per-sample data-loader path)."""
    times = []
    for sig in signals[:n]:
        t0 = time.perf_counter()
        tok.encode_signal(sig)
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def naive_speed(tok: ECGByteTokenizer, signals: np.ndarray, n: int) -> dict:
    """The plain-Python greedy longest-match encoder on ``n`` segments (checked equal to ours)."""
    vocab = dict(enumerate(tok.vocab))
    strings = [tok.symbolize(s) for s in signals[:n]]
    t0 = time.perf_counter()
    ids = [greedy_reference(s, vocab) for s in strings]
    seconds = time.perf_counter() - t0
    assert ids == [tok.encode(s) for s in strings], "plain-Python reference disagrees with the vectorized encoder"
    symbols = sum(map(len, strings))
    return {"segments": n, "symbols_per_s": round(symbols / seconds), "tokens_per_s": round(sum(map(len, ids)) / seconds)}


def ptbxl_signals(folder: Path) -> np.ndarray | None:
    import wfdb

    heads = sorted(folder.glob("records500/*/*_hr.hea"))
    if not heads:
        return None
    return np.stack([wfdb.rdsamp(str(h.with_suffix("")))[0].T.astype(np.float32) for h in heads])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=1000, help="synthetic 10 s records (one 2,500-sample segment each)")
    ap.add_argument("--train-samples", type=int, default=500, help="segments the BPE trains on (the rest are held out)")
    ap.add_argument("--vocab-sizes", type=int, nargs="+", default=[1000, 5000, 10000], help="vocabulary sizes to train")
    ap.add_argument("--batch-size", type=int, default=1024, help="segments per encode_signals call")
    ap.add_argument("--naive-segments", type=int, default=5, help="segments for the plain-Python encoder (0 = skip)")
    ap.add_argument("--store", default="", help="use this segment store instead of building a synthetic one")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: 8 synthetic segments (4 to train on), one "
                         "tokenizer of 300 ids, 1 segment for the plain-Python encoder")  # fmt: skip
    args = ap.parse_args(argv)
    if args.smoke:
        args.segments, args.train_samples, args.vocab_sizes, args.naive_segments = 8, 4, [300], 1
    setup_logging("WARNING")

    with tempfile.TemporaryDirectory(prefix="ecg-byte-bench-") as tmp:
        if args.store:
            store = SegmentStore(args.store)
        else:
            t0 = time.perf_counter()
            store = build_store(generate_records(args.segments, 1, seed=0), Path(tmp) / "store", "synthetic", 250, 2500)
            print(f"built synthetic store: {len(store)} segments of 12 x {store.segment_len} in {time.perf_counter() - t0:.1f} s")
        n_train = min(args.train_samples, len(store) // 2)
        held_out = store.signals(range(n_train, len(store)))
        train_part = store.signals(range(n_train))
        real = ptbxl_signals(SHARED / "ptbxl")
        results: dict = {
            "corpus": {
                "store_segments": len(store),
                "segment_len": store.segment_len,
                "fs": store.fs,
                "train_segments": n_train,
                "held_out_segments": len(held_out),
                "ptbxl_records": 0 if real is None else len(real),
            },
            "tokenizers": [],
        }
        toks, train_cpu = [], {}
        for vs in args.vocab_sizes:
            t0, c0 = time.perf_counter(), time.process_time()
            tok = train_tokenizer(train_part, vocab_size=vs, num_samples=0, seed=0)
            train_cpu[tok.vocab_size] = round(time.process_time() - c0, 2)  # all threads (the trainer uses every core)
            toks.append((f"trained {tok.vocab_size}", tok, round(time.perf_counter() - t0, 2)))
        legacy = SHARED / "ecg-bench-artifacts" / "ecg_byte_tokenizer_1000_25.pkl"
        if legacy.exists():
            toks.append(("original 1000_25 (imported)", import_pickle(legacy), None))
        for name, tok, train_s in toks:
            tok.encode("a")  # build the trie outside the timings
            row = {
                "tokenizer": name,
                "vocab_size": tok.vocab_size,
                "train_seconds": train_s,
                "train_cpu_seconds": train_cpu.get(tok.vocab_size) if train_s is not None else None,
                "train_symbols": int(train_part.size) if train_s is not None else None,
                "held_out": encode_speed(tok, held_out, args.batch_size),
                "single_segment_ms": single_latency(tok, held_out),
            }
            if real is not None:
                row["ptbxl"] = encode_speed(tok, real, args.batch_size)
            results["tokenizers"].append(row)
        if args.naive_segments and toks:
            results["naive_python_greedy"] = {"tokenizer": toks[-1][0], **naive_speed(toks[-1][1], held_out, args.naive_segments)}
    _print_table(results)
    print(json.dumps(results, indent=2))
    return results


def _print_table(results: dict) -> None:
    c = results["corpus"]
    print(
        f"\ncorpus: {c['train_segments']} train / {c['held_out_segments']} held-out segments of 12 x {c['segment_len']} "
        f"at {c['fs']} Hz; PTB-XL: {c['ptbxl_records']} records of 12 x 5000"
    )
    cols = [
        "tokenizer",
        "ids",
        "train s (cpu s)",
        "held-out symbols/token",
        "encode symbols/s (per cpu s)",
        "encode tokens/s",
        "1 segment (ms)",
    ]
    print("| " + " | ".join([*cols, "PTB-XL symbols/token"]) + " |")
    print("|" + " --- |" * (len(cols) + 1))
    for r in results["tokenizers"]:
        h, p = r["held_out"], r.get("ptbxl", {})
        train = "-" if r["train_seconds"] is None else f"{r['train_seconds']:.1f} ({r['train_cpu_seconds']:.1f})"
        speed = f"{h['symbols_per_s'] / 1e6:.2f} M ({h['symbols_per_cpu_s'] / 1e6:.2f} M)"
        cells = [r["tokenizer"], r["vocab_size"], train, f"{h['symbols_per_token']:.2f}", speed,
                 f"{h['tokens_per_s'] / 1e6:.2f} M", r["single_segment_ms"], p.get("symbols_per_token", "-")]  # fmt: skip
        print("| " + " | ".join(map(str, cells)) + " |")
    if "naive_python_greedy" in results:
        n = results["naive_python_greedy"]
        speed = f"{n['symbols_per_s'] / 1e6:.2f} M symbols/s, {n['tokens_per_s']} tokens/s"
        print(f"plain-Python greedy encoder ({n['tokenizer']}): {speed}")


if __name__ == "__main__":
    main()
