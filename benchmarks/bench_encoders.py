"""Encoder forward throughput (ECGs/s) of the ECG encoders at their sizes, on random ``[B, 12, L]`` input.

Run by hand (never timed in tests), e.g.:

    python benchmarks/bench_encoders.py --seq-len 1250 --batch-size 32 --repeats 5
    python benchmarks/bench_encoders.py --encoders st_mem:base merl:base --seq-len 2500 --device cuda
    python benchmarks/bench_encoders.py --smoke   # seconds: the small encoders, 2 x 250 samples, 1 pass (tests/test_benchmarks.py)

Each ``NAME:SIZE`` is built from its options (``model.encoder`` with ``type`` NAME and ``size``; defaults otherwise) for the segment length, in eval mode; the figure is the
median of ``--repeats`` timed forward passes (no gradient) after one warm-up, as ECGs per second. Also printed:
parameters and tokens the encoder hands the ELM. Prints one JSON object per encoder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ecg_bench.config import EncoderOptions, choice
from ecg_bench.models.encoders import build_encoder
from ecg_bench.models.encoders.base import encoder_spec

DEFAULT = ["st_mem:tiny", "mtae:tiny", "mlae:tiny", "merl:tiny", "st_mem:base", "mtae:base", "mlae:base", "merl:base",
           "conv1d:", "spectral:"]  # fmt: skip


def bench(name: str, size: str, seq_len: int, batch: int, repeats: int, device: str, threads: int) -> dict:
    opts = choice(EncoderOptions, name, **({"size": size} if size else {}))  # the encoder's defaults otherwise
    enc = build_encoder(opts, encoder_spec(opts, 12, seq_len, 250.0)).to(device).eval()
    x = torch.randn(batch, 12, seq_len, device=device)
    times = []
    with torch.no_grad():
        enc(x)
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            enc(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"encoder": name, "size": size or "-", "seq_len": seq_len, "batch": batch, "device": device, "threads": threads,
            "params_m": round(sum(p.numel() for p in enc.parameters()) / 1e6, 2), "ecgs_per_s": round(batch / med, 1),
            "seconds_per_batch": round(med, 4)}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=DEFAULT, help="NAME:SIZE (empty size = the encoder's only size)")
    ap.add_argument("--seq-len", type=int, default=1250, help="samples per segment (1250 = 5 s at 250 Hz)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: every encoder at its smallest size (no base sizes) "
                         "on 2 x 250 samples, 1 timed pass, 1 thread")  # fmt: skip
    args = ap.parse_args(argv)
    if args.smoke:
        args.encoders = [e for e in args.encoders if not e.endswith(":base")]
        args.seq_len, args.batch_size, args.repeats, args.threads = 250, 2, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    out = []
    for item in args.encoders:
        name, _, size = item.partition(":")
        r = bench(name, size, args.seq_len, args.batch_size, args.repeats, args.device, torch.get_num_threads())
        print(json.dumps(r), flush=True)
        out.append(r)
    return out


if __name__ == "__main__":
    main()
