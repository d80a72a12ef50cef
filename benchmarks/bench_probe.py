"""Linear probe of a pretrained tiny encoder vs the same encoder at random init, on a synthetic store.

Run by hand (never timed in tests), e.g.:

    python benchmarks/bench_probe.py --objective merl --steps 800 --seeds 0 1 2
    python benchmarks/bench_probe.py --objective mae --encoder mtae --steps 800 --seeds 0
    python benchmarks/bench_probe.py --smoke   # seconds: 40 patients, 2 steps of 8 (tests/test_benchmarks.py)

Per seed: a synthetic store (``--patients`` patients, one 10-s record each, cut into ``--seg-len``-sample segments at
``--fs`` Hz), ``ecg-bench pretrain merl`` (text tower: a random 2-layer BERT with the reports' words as its
vocabulary and weights of std ``--bert-init``, tests/elm_fixtures.py) or ``ecg-bench pretrain mae``, then
``ecg-bench probe`` of the pretrained encoder and of the same encoder at random init (same seed, same features).
Prints one JSON object per seed (both probes' macro AUROC with CI, per-label AUROC, the CI gap ``pretrained ci_low -
random ci_high``, CPU seconds).
tests/evaluation/test_probe.py runs the ``merl`` recipe for seed 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tiny BERT of the tests


def bench(args: argparse.Namespace, seed: int, root: Path) -> dict:
    from elm_fixtures import make_tiny_bert

    from ecg_bench import cli
    from ecg_bench.config import DataConfig, SourceOptions, choice
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    t0 = time.process_time()
    source = choice(SourceOptions, "synthetic", num_patients=args.patients, records_per_patient=1)
    store = build_store(SOURCES.get("synthetic")(DataConfig(source=source, seed=args.store_seed)), root / "store", "synthetic",
                        args.fs, args.seg_len)  # fmt: skip
    enc = root / "encoder"
    loop = ["--loop.steps", str(args.steps), "--loop.batch_size", str(args.batch_size), "--loop.lr", str(args.lr),
            "--loop.seed", str(seed), "--loop.num_threads", str(args.threads),
            "--loop.log_every", str(max(1, args.steps // 4))]  # fmt: skip
    if args.objective == "merl":
        bert = make_tiny_bert(root / "bert", [row["report"] for row in store.index], init=args.bert_init)
        pre = ["merl", "--text_model", str(bert), "--proj_dim", "32", "--text_frozen_layers", "0"]
        probe_enc = ["--encoder.type", "merl"]
    else:
        pre = ["mae", "--encoder", args.encoder, "--scaling", args.scaling]
        probe_enc = ["--encoder.type", args.encoder, "--encoder.scaling", args.scaling]
    with contextlib.redirect_stdout(io.StringIO()):  # the commands' own summaries; the log has the progress
        code = cli.main(["pretrain", *pre, "--store", str(store.path), "--out", str(enc), *loop])
    if code != 0:
        raise SystemExit("pretraining failed")
    t1 = time.process_time()
    out = {}
    for name, weights in (("random", []), ("pretrained", ["--encoder.weights", str(enc)])):
        path = root / f"{name}.json"
        argv = ["probe", "--store", str(store.path), *probe_enc, "--encoder.num_tokens", str(args.num_tokens), *weights,
                "--seed", str(seed), "--out", str(path)]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv)
        if code != 0:
            raise SystemExit("probe failed")
        r = json.loads(path.read_text())
        out[name] = {"macro_auroc": {k: round(v, 3) for k, v in r["macro_auroc"].items()},
                     "per_label": {k: round(v, 3) for k, v in r["per_label"].items()}}  # fmt: skip
    return {"objective": args.objective, "encoder": "merl" if args.objective == "merl" else args.encoder, "seed": seed,
            "steps": args.steps, "bert_init": args.bert_init, "fs": args.fs, "seg_len": args.seg_len,
            "patients": args.patients, **out,
            "ci_gap": round(out["pretrained"]["macro_auroc"]["ci_low"] - out["random"]["macro_auroc"]["ci_high"], 3),
            "cpu_s_pretrain": round(t1 - t0, 1), "cpu_s_total": round(time.process_time() - t0, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objective", choices=["merl", "mae"], default="merl")
    ap.add_argument("--encoder", default="mtae", help="with --objective mae: st_mem, mtae or mlae")
    ap.add_argument("--scaling", default="minmax", help="with --objective mae: minmax, zscore or none")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--bert-init", type=float, default=1.0,
                    help="with --objective merl: std of the random text tower's weights (BERT's own: 0.02)")
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--store-seed", type=int, default=11)
    ap.add_argument("--fs", type=int, default=50)
    ap.add_argument("--seg-len", type=int, default=250, help="samples per segment (250 = 5 s at 50 Hz)")
    ap.add_argument("--num-tokens", type=int, default=1, help="encoder tokens concatenated into the probe's features")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads while pretraining (0 = torch's default)")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: 40 patients, 2 pretraining steps of 8, one seed")
    args = ap.parse_args(argv)
    if args.smoke:
        args.patients, args.steps, args.batch_size, args.seeds = 40, 2, 8, args.seeds[:1]
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(seed)
            results.append(bench(args, seed, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
