"""Code that runs inside the processes the distributed tests spawn (torch.multiprocessing, gloo on CPU).

Each rank writes what it measured to ``<out>/rank<r>.json`` (numbers) and ``<out>/rank<r>-<name>.safetensors``
(trainable weights); the test process reads them back. Ranks other than 0 are forbidden to write: the
functions every write goes through (checkpoint temp folders, safetensors, results.json, claiming the output
folder, building a store) raise there, so a test passing shows rank 0 alone wrote.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world_size: int, *args) -> None:
    import torch.multiprocessing as mp

    mp.spawn(fn, args=(world_size, free_port(), *args), nprocs=world_size, join=True)


def _init(rank: int, world_size: int, port: int, backend: str = "gloo") -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false")  # fmt: skip
    torch.set_num_threads(1)
    from gguf_cache import reuse_gguf_loads

    reuse_gguf_loads()
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    if rank:
        _forbid_writes()


def _forbid_writes() -> None:
    from ecg_bench import folders, pipeline
    from ecg_bench.training import checkpoint, tracking

    def refuse(*_a, **_k):
        raise AssertionError("a rank other than 0 tried to write")

    folders.make_temp = folders.replace = folders.claim = refuse
    checkpoint.save_file = refuse
    pipeline.write_results = pipeline.build_store = pipeline.prepare_data = pipeline.log_to_file = refuse
    tracking.MetricsFile = refuse  # metrics.jsonl


def _done(out: Path, rank: int, result: dict[str, Any]) -> None:
    import torch.distributed as dist

    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def trainable(elm) -> dict:
    """Whole trainable weights by name (FSDP shards gathered)."""
    from ecg_bench.training.distributed import full_tensor

    return {n: full_tensor(p).detach().cpu().clone().contiguous() for n, p in elm.named_parameters() if p.requires_grad}


def first_step_grads(tr) -> tuple[float, dict]:
    """The loss and the whole gradients (FSDP shards gathered) of the first step's backward, before any update."""
    from ecg_bench.training.distributed import full_tensor

    loss = tr.accumulate(0)
    grads = {n: full_tensor(p.grad).detach().cpu().clone().contiguous() for n, p in tr.elm.named_parameters()
             if p.requires_grad and p.grad is not None}  # fmt: skip
    tr.optimizer.zero_grad(set_to_none=True)
    return loss, grads


def make_trainer(store_dir: str, items: list, out: str | Path, **train):
    from elm_fixtures import make_tiny_elm

    from ecg_bench.config import EncoderOptions, RunConfig, choice
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.representations.signal import SignalRepresentation
    from ecg_bench.training.trainer import Trainer

    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    for k, v in {"max_steps": 3, "batch_size": 4, "log_every": 1, "save_every": 2, **train}.items():
        setattr(cfg.train, k, v)
    elm, proc = make_tiny_elm()
    ds = ConversationDataset(items, SegmentStore(store_dir), SignalRepresentation())
    return Trainer(elm, proc, ds, cfg, out)


def train_worker(rank: int, world_size: int, port: int, spec: dict) -> None:
    """Train from scratch and resume from ``spec['resume_from']`` under ``spec['strategy']``; maybe evaluate."""
    from safetensors.torch import save_file

    _init(rank, world_size, port, spec.get("backend", "gloo"))
    out = Path(spec["out"])
    result: dict[str, Any] = {}
    extra = spec.get("train", {})
    tr = make_trainer(spec["store"], spec["items"], out / "scratch", strategy=spec["strategy"], batch_size=spec["batch_size"],
                      **extra)  # fmt: skip
    result["first_loss"], grads = first_step_grads(tr)
    res = tr.train()
    result["scratch"] = {"losses": res.losses, "checkpoint": res.checkpoint, "real_tokens": res.real_tokens,
                         "computed_tokens": res.computed_tokens, "strategy": tr.strategy}  # fmt: skip
    if spec.get("val_items"):  # every rank scores its share of the held-out batches (uneven shards: a spare pass)
        result["val"] = validation_loss(tr, spec["store"], spec["val_items"])
    weights = trainable(tr.elm)
    if spec.get("resume_from"):
        tr = make_trainer(spec["store"], spec["items"], out / "resumed", strategy=spec["strategy"],
                          batch_size=spec["batch_size"], resume_from=spec["resume_from"], **extra)  # fmt: skip
        res = tr.train()
        result["resumed"] = {"losses": res.losses}
        resumed = trainable(tr.elm)
    if rank == 0:  # the test process reads these (not part of the code under test)
        save_file(weights, str(out / "scratch.safetensors"))
        save_file(grads, str(out / "grads.safetensors"))
        if spec.get("resume_from"):
            save_file(resumed, str(out / "resumed.safetensors"))
    if spec.get("eval_items"):
        result["eval"] = evaluate_items(spec["store"], spec["eval_items"])
    _done(out, rank, result)


def validation_loss(tr, store_dir: str, items: list) -> dict:
    """The trainer's validation loss on ``items`` (summed over the ranks of a process group)."""
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.representations.signal import SignalRepresentation

    tr.val_dataset = ConversationDataset(items, SegmentStore(store_dir), SignalRepresentation())
    return tr.validation_loss()


def evaluate_items(store_dir: str, items: list) -> dict:
    """results of ``evaluate`` for a fresh tiny ELM on ``items`` (sharded when a process group is up)."""
    import torch
    from elm_fixtures import make_tiny_elm

    from ecg_bench.config import ConditionOptions, EvalConfig, choice
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.evaluation.evaluator import evaluate
    from ecg_bench.representations.signal import SignalRepresentation

    elm, proc = make_tiny_elm()
    ds = ConversationDataset(items, SegmentStore(store_dir), SignalRepresentation())
    conditions = [choice(ConditionOptions, c) for c in ("real", "no_signal")]
    cfg = EvalConfig(batch_size=2, max_new_tokens=4, conditions=conditions, bootstrap_resamples=50)
    results = evaluate(elm, proc, ds, cfg, torch.device("cpu"))
    for cond in results["conditions"].values():
        cond.pop("seconds")
    return results


def pipeline_worker(rank: int, world_size: int, port: int, spec: dict) -> None:
    """The whole ``run`` (fresh store, conversations, DDP training, sharded evaluation) on every rank."""
    from ecg_bench.config import RunConfig
    from ecg_bench.pipeline import run

    _init(rank, world_size, port)
    cfg = RunConfig.from_dict(spec["config"])
    results = run(cfg)
    result = {"train_items": results["data"]["train_items"], "test_items": results["data"]["test_items"],
              "training": results["training"],
              "samples": [(s["condition"], s["id"], s["prediction"]) for s in results["samples"]],
              "store": results["data"]["store"]}  # fmt: skip
    _done(Path(spec["out"]), rank, result)


def main_first_worker(rank: int, world_size: int, port: int, spec: dict) -> None:
    """Rank 0 fails inside ``main_first``: every rank must get an error (none waits for ever), then all finish."""
    from ecg_bench.errors import DataError, ECGBenchError
    from ecg_bench.training.distributed import main_first

    _init(rank, world_size, port)

    def build():
        if rank != 0:
            raise AssertionError("only rank 0 runs the function")
        raise DataError("store.bin: truncated")

    try:
        main_first(build, "preparing the data")
        caught = ""
    except ECGBenchError as e:
        caught = f"{type(e).__name__}: {e}"
    ok = main_first(lambda: {"rank": rank, "items": [1, 2, 3]}, "the second call")  # the group still works
    _done(Path(spec["out"]), rank, {"caught": caught, "second": ok})
