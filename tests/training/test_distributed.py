"""Several processes (2, gloo on CPU, torch.multiprocessing spawn) train and evaluate like one.

- DDP and FSDP2 with micro-batch 2 on 2 ranks give the loss sequence and final trainable weights of one
  process with batch 4;
- a world-size-2 run resumes from a world-size-1 checkpoint and the reverse, ending where the
  uninterrupted single-process run ends;
- sharded evaluation and the sharded validation loss give the same results as one process;
- the whole pipeline on 2 processes builds a fresh store once (rank 0, the other waits), both ranks see
  the same folds, and rank 0 alone writes, metrics.jsonl and run.log included (``dist_workers`` makes every
  write raise on rank 1).
"""

from __future__ import annotations

import json

import pytest
import torch
from dist_workers import (evaluate_items, first_step_grads, main_first_worker, make_trainer, pipeline_worker, spawn,
                          train_worker, trainable, validation_loss)
from safetensors.torch import load_file

STEPS = 3


@pytest.fixture(scope="module")
def items(tiny_items):
    return tiny_items[:16]


@pytest.fixture(scope="module")
def single(tiny_store, items, tmp_path_factory):
    """One process, batch 4, 3 steps, a checkpoint after step 2 (the reference every test compares to)."""
    out = tmp_path_factory.mktemp("single")
    tr = make_trainer(str(tiny_store.path), items, out / "scratch", strategy="single", batch_size=4)
    first_loss, grads = first_step_grads(tr)
    res = tr.train()
    return {"first_loss": first_loss, "grads": grads, "losses": res.losses, "weights": trainable(tr.elm),
            "step2": out / "scratch" / "step-000002", "out": out, "val": validation_loss(tr, str(tiny_store.path), items[:5]),
            "real": res.real_tokens, "computed": res.computed_tokens}  # fmt: skip


def _same_validation_loss(r0: dict, r1: dict, single: dict) -> None:
    """5 held-out conversations in batches of 2: 3 batches over 2 ranks, rank 1 idle (a spare pass) in the second round."""
    assert r0["val"]["val_tokens"] == r1["val"]["val_tokens"] == single["val"]["val_tokens"] > 0
    assert r0["val"]["val_loss"] == pytest.approx(single["val"]["val_loss"], rel=1e-4) and r1["val"] == r0["val"]


def _close_weights(got: dict, want: dict, atol: float = 1e-5) -> None:
    """Equal within float noise (AdamW turns a gradient's rounding into an update of up to ~lr; 1e-5 is 1 % of one)."""
    assert got.keys() == want.keys() and any("lora_" in k for k in got) and any("projector" in k for k in got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


def _same_first_step(r0: dict, out, single: dict) -> None:
    """The first step's loss and gradients (before AdamW, which would hide a gradient scale) equal one process's."""
    assert r0["first_loss"] == pytest.approx(single["first_loss"], rel=1e-6)
    _close_weights(load_file(str(out / "grads.safetensors")), single["grads"], atol=1e-7)


def _ranks(out, n=2) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


@pytest.mark.slow
def test_ddp_equals_one_process_resumes_across_world_sizes_and_evaluates_sharded(tiny_store, items, single, tmp_path):
    eval_items = items[:7]  # 7 items, multi-turn ones among them: uneven shards over batches of 2
    spec = {"store": str(tiny_store.path), "items": items, "out": str(tmp_path), "strategy": "ddp", "batch_size": 2,
            "resume_from": str(single["step2"]), "eval_items": eval_items, "val_items": items[:5]}  # fmt: skip
    spawn(train_worker, 2, spec)
    r0, r1 = _ranks(tmp_path)
    assert r0["scratch"]["strategy"] == "ddp"
    _same_first_step(r0, tmp_path, single)
    _same_validation_loss(r0, r1, single)
    # the loss of every step is the global one: the same on both ranks, and the one-process loss
    assert r0["scratch"]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert r1["scratch"]["losses"] == r0["scratch"]["losses"]
    assert r0["scratch"]["real_tokens"] == single["real"]  # counted over both ranks
    assert r0["scratch"]["computed_tokens"] <= single["computed"]  # each rank pads only its own half
    _close_weights(load_file(str(tmp_path / "scratch.safetensors")), single["weights"])
    # world size 2 resumed from the world-size-1 checkpoint of step 2 ends where one process ends
    assert r0["resumed"]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    _close_weights(load_file(str(tmp_path / "resumed.safetensors")), single["weights"])
    # rank 0 wrote one checkpoint holding both ranks' RNG states
    ck2 = tmp_path / "scratch" / "step-000002"
    assert (ck2 / "rng_state.json").is_file() and (ck2 / "rng_state.rank1.json").is_file()
    assert json.loads((ck2 / "trainer_state.json").read_text())["world_size"] == 2
    # and the reverse: one process resumes from the world-size-2 checkpoint
    back = make_trainer(str(tiny_store.path), items, tmp_path / "back", strategy="single", batch_size=4, resume_from=str(ck2))
    res = back.train()
    assert res.losses == pytest.approx(single["losses"], rel=1e-5)
    _close_weights(trainable(back.elm), single["weights"])
    # sharded evaluation, gathered in order: the same results on every rank as in one process
    want = evaluate_items(str(tiny_store.path), eval_items)
    assert want["samples"] and len(want["samples"]) > 4
    assert r0["eval"] == want and r1["eval"] == want


@pytest.mark.slow
def test_fsdp_equals_one_process_and_resumes_from_one_process(tiny_store, items, single, tmp_path):
    spec = {"store": str(tiny_store.path), "items": items, "out": str(tmp_path), "strategy": "fsdp", "batch_size": 2,
            "resume_from": str(single["step2"]), "val_items": items[:5]}  # fmt: skip
    spawn(train_worker, 2, spec)
    r0, r1 = _ranks(tmp_path)
    assert r0["scratch"]["strategy"] == "fsdp"
    _same_first_step(r0, tmp_path, single)
    _same_validation_loss(r0, r1, single)
    assert r0["scratch"]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    _close_weights(load_file(str(tmp_path / "scratch.safetensors")), single["weights"])
    _close_weights(load_file(str(tmp_path / "resumed.safetensors")), single["weights"])
    # the FSDP checkpoint is gathered whole: same files and shapes as one process's, loadable by one process
    ck = tmp_path / "scratch" / "final"
    theirs = single["out"] / "scratch" / "final" / "adapter" / "adapter_model.safetensors"
    mine = ck / "adapter" / "adapter_model.safetensors"
    a, b = load_file(str(mine)), load_file(str(theirs))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    opt = load_file(str(ck / "optimizer.safetensors"))
    ref = load_file(str(single["out"] / "scratch" / "final" / "optimizer.safetensors"))
    assert opt.keys() == ref.keys() and all(opt[k].shape == ref[k].shape for k in opt)


@pytest.mark.slow
def test_pipeline_on_two_processes_builds_the_data_once_and_rank0_writes(tmp_path):
    from ecg_bench.config import ConditionOptions, EncoderOptions, RunConfig, SourceOptions, choice

    cfg = RunConfig()
    cfg.output_dir = str(tmp_path / "run")
    cfg.data.source = choice(SourceOptions, "synthetic", num_patients=10, records_per_patient=1)
    cfg.data.workers, cfg.data.seed = 1, 3
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.strategy, cfg.train.group_by_length = 2, 2, "ddp", 2
    cfg.eval.max_new_tokens, cfg.eval.bootstrap_resamples = 2, 20
    cfg.eval.conditions = [choice(ConditionOptions, "real")]
    cfg.data.max_eval_items = 4
    cfg.train.val_fraction, cfg.train.eval_every = 0.2, 1  # the validation loss on both ranks, rank 0 logs it
    spawn(pipeline_worker, 2, {"config": cfg.to_dict(), "out": str(tmp_path)})
    r0, r1 = _ranks(tmp_path)
    assert r0["store"] == r1["store"] == str(tmp_path / "run" / "store")
    assert (r0["train_items"], r0["test_items"]) == (r1["train_items"], r1["test_items"])  # the same folds
    assert r0["samples"] == r1["samples"] and r0["training"]["world_size"] == 2
    assert 0 < r0["training"]["real_token_fraction"] <= 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["environment"]["processes"] == 2 and results["training"]["steps"] == 2
    assert [(s["condition"], s["id"], s["prediction"]) for s in results["samples"]] == [tuple(s) for s in r0["samples"]]
    assert (tmp_path / "run" / "checkpoints" / "final" / "rng_state.rank1.json").is_file()
    # tracking: rank 0 alone wrote metrics.jsonl (one line per step, tokens of both ranks) and run.log
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and all(m["val_tokens"] > 0 and m["val_loss"] > 0 for m in lines)
    assert r0["training"]["val_items"] == r1["training"]["val_items"] > 0
    assert sum(m["tokens"] for m in lines) == r0["training"]["real_tokens"]
    assert "validation loss" in (tmp_path / "run" / "run.log").read_text()


def test_an_error_on_rank0_during_the_data_barrier_reaches_every_rank(tmp_path):
    spawn(main_first_worker, 2, {"out": str(tmp_path)})
    r0, r1 = _ranks(tmp_path)
    assert r0["caught"] == "DataError: store.bin: truncated"
    assert r1["caught"] == "ECGBenchError: rank 0 failed while preparing the data: DataError: store.bin: truncated"
    assert r0["second"] == r1["second"] == {"rank": 0, "items": [1, 2, 3]}  # rank 0's result, handed to every rank


@pytest.mark.gpu
def test_fsdp_bf16_on_gpus_trains_like_one_gpu(tiny_store, items, tmp_path):
    """On CUDA, FSDP2 gathers bf16 parameters and reduces gradients in fp32 (NCCL; 2 GPUs, or 1 when only one)."""
    n = min(2, torch.cuda.device_count())
    cuda = {"device": "cuda", "precision": "bf16"}
    one = make_trainer(str(tiny_store.path), items, tmp_path / "one", strategy="single", batch_size=2 * n, **cuda)
    want = one.train().losses
    spec = {"store": str(tiny_store.path), "items": items, "out": str(tmp_path), "strategy": "fsdp", "batch_size": 2,
            "backend": "nccl", "train": cuda}  # fmt: skip
    spawn(train_worker, n, spec)
    r0 = _ranks(tmp_path, n)[0]
    assert r0["scratch"]["losses"] == pytest.approx(want, rel=2e-2)  # bf16 rounding differs between the two paths
    assert all(torch.isfinite(v).all() for v in load_file(str(tmp_path / "scratch.safetensors")).values())
