"""Seconds per optimizer step and generated answers per second of an ELM, on the synthetic default data.

Run by hand (never timed in tests), e.g.:

    python benchmarks/bench_train_step.py --llm smollm2-135m --batch-size 8 --steps 10
    python benchmarks/bench_train_step.py --llm mini --full-finetune --encoder spectral --batch-size 16 --steps 50
    python benchmarks/bench_train_step.py --llm smollm2-135m --batch-size 32 --device cuda --precision bf16
    python benchmarks/bench_train_step.py --smoke   # seconds: tiny LLM, 1 timed step, 2 prompts (tests/test_benchmarks.py)

Prints one JSON object: the settings, median / mean step time after warm-up, tokens per step, and
generation throughput (greedy, ``--max-new-tokens``) over ``--eval-items`` prompts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time

import torch

from ecg_bench.config import EncoderOptions, MappedOptions, RunConfig, SourceOptions, choice
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.evaluation.evaluator import build_samples, generate
from ecg_bench.logging_utils import setup_logging
from ecg_bench.models.elm import build_elm
from ecg_bench.pipeline import prepare_data
from ecg_bench.representations.base import build_representation
from ecg_bench.training.trainer import Trainer


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="smollm2-135m", help="LLM short name, hub id, folder or .gguf")
    ap.add_argument("--encoder", default="conv1d", help="ECG encoder name")
    ap.add_argument("--full-finetune", action="store_true", help="train every LLM weight instead of LoRA")
    ap.add_argument("--batch-size", type=int, default=8, help="examples per step")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--precision", default="auto", help="fp32, bf16 or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--eval-items", type=int, default=64, help="prompts for the generation benchmark")
    ap.add_argument("--max-new-tokens", type=int, default=8, help="tokens generated per prompt")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: the tiny LLM, 12 patients, batch 2, 1 timed step, "
                         "2 prompts of 2 tokens, CPU, 1 thread")  # fmt: skip
    args = ap.parse_args(argv)
    if args.smoke:
        args.llm, args.full_finetune, args.batch_size, args.steps, args.device = "tiny", True, 2, 1, "cpu"
        args.precision, args.threads, args.eval_items, args.max_new_tokens = "fp32", 1, 2, 2
    setup_logging("WARNING")

    cfg = RunConfig()
    cfg.output_dir = tempfile.mkdtemp(prefix="ecg-bench-bench-")
    cfg.data.source = choice(SourceOptions, "synthetic", num_patients=12 if args.smoke else 100)
    cfg.data.segment_seconds = 5.0
    cfg.data.mapped = choice(MappedOptions, "synthetic_qa", question_types=["verify", "choose"])
    cfg.model.llm, cfg.model.full_finetune = args.llm, args.full_finetune
    cfg.model.encoder = choice(EncoderOptions, args.encoder)
    cfg.model.lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg.train.batch_size, cfg.train.max_steps = args.batch_size, args.steps + 2
    cfg.train.device, cfg.train.precision, cfg.train.num_threads = args.device, args.precision, args.threads
    cfg.eval.batch_size, cfg.eval.max_new_tokens = args.batch_size * 4, args.max_new_tokens

    data = prepare_data(cfg)
    rep = build_representation(cfg.model.representation, float(data.store.fs))
    out = rep.output(data.store.segment_len)
    leads, seq_len = out.shape
    elm, fmt = build_elm(cfg.model, seq_len=seq_len, in_leads=leads, fs=data.store.fs, kind=out.kind, shape=out.shape)
    trainer = Trainer(elm, fmt, ConversationDataset(data.train, data.store, rep), cfg, cfg.output_dir)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

    times, tokens = [], []
    for step in range(args.steps + 2):
        sync()
        t0 = time.perf_counter()
        trainer.train_step(step)
        sync()
        if step >= 2:
            times.append(time.perf_counter() - t0)
            tokens.append(sum(len(trainer.collate.encoded[i].input_ids) for ix in trainer.micro_batches(step) for i in ix))

    test = ConversationDataset(data.test[: args.eval_items], data.store, rep)
    samples = build_samples(test, fmt, "real")
    sync()
    t0 = time.perf_counter()
    generate(elm, fmt, samples, cfg.eval, trainer.device)
    sync()
    gen_s = time.perf_counter() - t0

    result = {
        "llm": args.llm,
        "encoder": args.encoder,
        "full_finetune": args.full_finetune,
        "device": str(trainer.device),
        "device_name": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else "cpu",
        "precision": str(trainer.amp_dtype or "fp32"),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "step_seconds_median": round(statistics.median(times), 4),
        "step_seconds_mean": round(statistics.fmean(times), 4),
        "tokens_per_step_mean": round(statistics.fmean(tokens), 1),
        "generation_prompts": len(samples),
        "generation_prompts_per_second": round(len(samples) / gen_s, 2),
        "torch": torch.__version__,
        "smoke": args.smoke,
    }
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # the synthetic store and the run folder
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()
