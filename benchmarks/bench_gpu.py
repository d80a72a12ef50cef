"""Training and generation throughput on one GPU: the original ECG-Bench's defaults (A) against ours (B).

A Llama-3.2-1B-shaped LLM (16 layers, hidden 2048, GQA 32/8 heads, MLP 8192, 128,256-token vocabulary,
tied embeddings) with RANDOM weights (nothing is downloaded), LoRA r=16 on every projection, trained on
synthetic conversations whose lengths follow a fixed seeded distribution (median ~190 tokens, the last
~15 % of each the supervised answer):

- (A) the original's defaults: batch 2, every sample padded to 1024 tokens, logits over the whole vocabulary
  at every position (the Hugging Face ``labels=`` loss), plain AdamW; generation one prompt at a time.
- (B) ours: ``ELM.forward`` (the LM head only on supervised positions), length-grouped batches
  (``train.group_by_length``, the trainer's own ``length_grouped``) of ``--batch`` examples padded to the
  batch's longest, fused AdamW on CUDA, optional ``--compile``; generation in left-padded batches.

Both use bf16 autocast on a GPU that supports it (fp32 on CPU). Reported per phase: real tokens/s (non-pad),
computed tokens/s (padding included), MFU (useful FLOPs: 4 x decoder matmul parameters per REAL token plus
4 x LM-head parameters per SUPERVISED token, i.e. forward + activation gradients, as frozen base weights
have no weight gradients; attention FLOPs ignored; over ``--peak-tflops``),
peak memory (CUDA: max allocated in the phase; CPU: the process's max RSS so far), generation tokens/s.

    python benchmarks/bench_gpu.py                     # one GPU (about 3-5 minutes on an H100)
    python benchmarks/bench_gpu.py --compile           # (B) with torch.compile of each decoder layer
    python benchmarks/bench_gpu.py --pack              # (B) packs each batch into rows of 1024 (train.packing)
    python benchmarks/bench_gpu.py --tiny              # the same script at tiny size on CPU, < 2 minutes
    python benchmarks/bench_gpu.py --smoke             # seconds: --tiny with 1 step per phase (tests/test_benchmarks.py)

Prints one JSON object; ``--out FILE`` writes it too. Never timed in tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch

from ecg_bench.models.elm.base import ELM
from ecg_bench.models.elm.processors import pack_batch
from ecg_bench.training.trainer import length_grouped

IGNORE = -100


@dataclass
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    pad_to: int
    """(A) pads every sample to this length (the original's max_length 1024)."""


LLAMA_3_2_1B = Shape(hidden=2048, layers=16, heads=32, kv_heads=8, mlp=8192, vocab=128256, pad_to=1024)
TINY = Shape(hidden=128, layers=2, heads=4, kv_heads=2, mlp=512, vocab=4096, pad_to=256)


def build(shape: Shape, device: torch.device, lora_r: int) -> ELM:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.mlp,
                      num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                      max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=None, pad_token_id=0, attn_implementation="sdpa")  # fmt: skip
    torch.manual_seed(0)
    llm = LlamaForCausalLM(cfg)
    llm.generation_config.eos_token_id = None  # random weights: every prompt generates exactly max_new_tokens
    for p in llm.parameters():
        p.requires_grad_(False)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    llm = get_peft_model(llm, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules=targets, task_type="CAUSAL_LM"))
    return ELM(llm).to(device)


def matmul_params(shape: Shape) -> tuple[int, int]:
    """Weights a token multiplies through: (the decoder's projections, the LM head)."""
    attn = shape.hidden * shape.hidden * 2 + shape.hidden * (shape.hidden // shape.heads * shape.kv_heads) * 2
    return shape.layers * (attn + 3 * shape.hidden * shape.mlp), shape.hidden * shape.vocab


def examples(n: int, shape: Shape, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """``n`` (input_ids, labels): lengths log-normal around 19 % of pad_to (190 at 1024), capped at pad_to."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(0.19 * shape.pad_to), 0.45, n), 32, shape.pad_to).astype(int)
    out = []
    for n_tok in lengths:
        ids = rng.integers(3, shape.vocab, n_tok).tolist()
        answer = max(4, int(0.15 * n_tok))
        out.append((ids, [IGNORE] * (n_tok - answer) + ids[-answer:]))
    return out


def collate(batch, width: int | None = None, pack_to: int = 0):
    if pack_to:  # several samples per row, as train.packing does
        b, _ = pack_batch([x for x, _ in batch], [y for _, y in batch], 0, pack_to)
        return b.input_ids, b.attention_mask, b.labels, b.position_ids
    width = width or max(len(ids) for ids, _ in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)], mask[i, : len(x)], labels[i, : len(y)] = torch.tensor(x), 1, torch.tensor(y)
    return ids, mask, labels, None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_phase(name, elm, batches, loss_fn, device, amp, fused, warmup, params, peak_tflops):
    opt = torch.optim.AdamW([p for p in elm.parameters() if p.requires_grad], lr=1e-4, fused=fused)
    reset_memory(device)
    real = computed = supervised = 0
    for k, (ids, mask, labels, pos) in enumerate(batches):
        if k == warmup:
            sync(device)
            t0, real, computed, supervised = time.perf_counter(), 0, 0, 0
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(ids, mask, labels, None if pos is None else pos.to(device))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        real, computed = real + int(mask.sum()), computed + mask.numel()
        supervised += int((labels[:, 1:] != IGNORE).sum())
    sync(device)
    dt = time.perf_counter() - t0
    useful_flops = 4 * (params[0] * real + params[1] * supervised)
    mfu = useful_flops / dt / (peak_tflops * 1e12) if peak_tflops else None
    return {"phase": name, "steps_timed": len(batches) - warmup, "seconds": round(dt, 3),
            "real_tokens_per_s": round(real / dt, 1), "computed_tokens_per_s": round(computed / dt, 1),
            "real_token_fraction": round(real / computed, 4), "mfu": round(mfu, 4) if mfu is not None else None,
            "peak_memory_gib": round(peak_memory_gib(device), 2)}  # fmt: skip


def generate_phase(name, elm, prompts, batch, new_tokens, device, amp):
    reset_memory(device)
    elm.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    chunks = [[prompts[i] for i in order[s : s + batch]] for s in range(0, len(order), batch)]
    generated, t0 = 0, None
    for k, chunk in enumerate([chunks[0], *chunks]):  # the first batch again, untimed, as warm-up
        if k == 1:
            sync(device)
            t0, generated = time.perf_counter(), 0
        width = max(map(len, chunk))
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):  # left padding, as the evaluator does
            ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = elm.generate(ids.to(device), mask.to(device), max_new_tokens=new_tokens, pad_token_id=0)
        generated += sum(len(o) for o in out)
    sync(device)
    dt = time.perf_counter() - t0
    elm.train()
    return {"phase": name, "prompts": len(prompts), "batch": batch, "seconds": round(dt, 3),
            "generated_tokens_per_s": round(generated / dt, 1), "peak_memory_gib": round(peak_memory_gib(device), 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on CPU (a smoke run of this script, < 2 minutes)")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--steps", type=int, default=0, help="timed optimizer steps per phase (default 30, tiny 6)")
    ap.add_argument("--batch", type=int, default=0, help="(B) examples per length-grouped batch (default 32, tiny 16)")
    ap.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    ap.add_argument("--compile", action="store_true", help="(B): torch.compile each decoder layer")
    ap.add_argument("--pack", action="store_true", help="(B): pack each batch into rows of pad_to tokens (train.packing)")
    ap.add_argument("--gen-prompts", type=int, default=0, help="prompts generated per phase (default 64, tiny 16)")
    ap.add_argument("--gen-batch", type=int, default=64, help="(B) prompts per generation batch")
    ap.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the device's dense bf16 peak for MFU (default: 989 on H100/H200, else none)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine more threads spin and run slower)")  # fmt: skip
    ap.add_argument("--out", default="", help="also write the JSON here")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs, not a measurement: --tiny on CPU with 1 timed step per phase, "
                         "batches of 2, 2 prompts of 2 new tokens")  # fmt: skip
    args = ap.parse_args(argv)
    if args.smoke:
        args.tiny, args.device, args.steps, args.batch, args.gen_prompts, args.gen_batch, args.new_tokens = (
            True, "cpu", 1, 2, 2, 2, 2)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    shape = TINY if args.tiny else LLAMA_3_2_1B
    steps, batch_b = args.steps or (6 if args.tiny else 30), args.batch or (16 if args.tiny else 32)
    n_prompts = args.gen_prompts or (16 if args.tiny else 64)
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops or (989.0 if any(g in name for g in ("H100", "H200")) else 0.0)
    params = matmul_params(shape)
    warmup = 3
    data = examples(max(2 * (steps + warmup), batch_b * (steps + warmup)), shape)
    result = {"device": name, "torch": torch.__version__, "shape": shape.__dict__, "tiny": args.tiny, "lora_r": args.lora_r,
              "bf16": amp, "decoder_matmul_params": params[0], "lm_head_params": params[1], "peak_tflops": peak or None}  # fmt: skip

    # (A) the original's defaults: batch 2 padded to pad_to, full-vocabulary logits, plain AdamW
    elm = build(shape, device, args.lora_r)

    def hf_loss(ids, mask, labels, _pos):
        return elm.llm(input_ids=ids, attention_mask=mask, labels=labels).loss

    a_batches = [collate(data[i : i + 2], shape.pad_to) for i in range(0, 2 * (steps + warmup), 2)]
    result["train_A"] = train_phase("A: batch 2, padded to %d" % shape.pad_to, elm, a_batches, hf_loss, device, amp, False,
                                    warmup, params, peak)  # fmt: skip

    # (B) ours: length-grouped batches, loss on supervised positions only, fused AdamW, optional compile
    del elm
    reset_memory(device)
    elm = build(shape, device, args.lora_r)
    if args.compile:
        for layer in elm.base_llm.get_decoder().layers:
            layer.compile()
    lengths = np.array([len(x) for x, _ in data])
    order = length_grouped(np.arange(len(data)), lengths, batch_b, 8, np.random.default_rng(0))
    pack = shape.pad_to if args.pack else 0
    b_batches = [collate([data[i] for i in order[k : k + batch_b]], pack_to=pack)
                 for k in range(0, batch_b * (steps + warmup), batch_b)]  # fmt: skip

    def our_loss(ids, mask, labels, pos):
        loss_sum, n = elm(ids, mask, labels, position_ids=pos)
        return loss_sum / max(n, 1)

    b_name = f"B: length-grouped batches of {batch_b}" + (f", packed into rows of {pack}" if pack else "")
    result["train_B"] = train_phase(b_name, elm, b_batches, our_loss, device, amp,
                                    device.type == "cuda", warmup, params, peak)  # fmt: skip

    prompts = [x[: max(8, len(x) - len(x) // 7)] for x, _ in data[:n_prompts]]
    result["generate_A"] = generate_phase("A: batch 1", elm, prompts, 1, args.new_tokens, device, amp)
    result["generate_B"] = generate_phase(f"B: batches of {args.gen_batch}", elm, prompts, args.gen_batch, args.new_tokens,
                                          device, amp)  # fmt: skip
    ta, tb = result["train_A"], result["train_B"]
    result["speedup"] = {
        "train_real_tokens": round(tb["real_tokens_per_s"] / ta["real_tokens_per_s"], 2),
        "generation_tokens": round(result["generate_B"]["generated_tokens_per_s"]
                                   / result["generate_A"]["generated_tokens_per_s"], 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
