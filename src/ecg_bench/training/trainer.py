"""The trainer: AdamW with two learning rates (fused on CUDA), warmup + cosine, gradient accumulation,
clipping, bf16 autocast where the device supports it, folder checkpoints and exact resume, in one process
or several (``train.strategy`` single, ddp or fsdp; see ``training.distributed``).

Data order is a pure function of (seed, epoch), so resuming at step k replays exactly the batches an
uninterrupted run would have seen from step k on; no data-loader state needs saving. The checkpoint holds
every RNG state (python, numpy, torch CPU and CUDA; one set per rank), restored on resume, so dropout masks
match too.

With N processes, each global micro-batch (N x ``batch_size`` examples) is cut into N slices, one per rank;
the loss is divided by the supervised-token count of the whole global step (summed over ranks), so N ranks
with micro-batch b compute the same update as one process with batch N x b, and a run may resume on
another number of processes (keeping N x batch_size the same keeps the batches the same).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_bench.config import RunConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.devices import resolve_device, resolve_dtype, warmup_cosine
from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.logging_utils import get_logger, progress
from ecg_bench.models.elm import ELM, Processor
from ecg_bench.training import distributed
from ecg_bench.training.checkpoint import (TRAINING_DATA_FILE, load_checkpoint, load_optimizer_state, read_trainer_state,
                                           restore_rng_state, save_checkpoint)  # fmt: skip
from ecg_bench.training.tracking import Tracker, peak_memory_gb

log = get_logger(__name__)


class NonFiniteError(ECGBenchError):
    """Training produced a NaN or infinite loss or gradient norm; the step's update is not applied."""


def length_grouped(order: np.ndarray, lengths: np.ndarray, batch: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """``order`` regrouped so that each run of ``batch`` examples holds similar lengths: every ``window`` batches'
    examples sorted by length and cut into batches, whose order is then shuffled by ``rng`` (so long and short
    batches stay mixed over the epoch). A function of its arguments only."""
    batches = []
    for start in range(0, len(order), window * batch):
        chunk = order[start : start + window * batch]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch] for i in range(0, len(chunk), batch)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else order


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str = ""
    real_tokens: int = 0
    """Non-padding tokens the steps of this run computed on (all ranks)."""
    computed_tokens: int = 0
    """Token positions computed, padding included (all ranks); real_tokens / computed_tokens is the real-token fraction."""
    world_size: int = 1
    strategy: str = "single"


class Trainer:
    """Trains ``elm`` on ``dataset`` as configured by ``cfg.train``; checkpoints go to ``out_dir``.

    ``processor`` (from ``build_elm``) turns the conversations and their ECGs into batches.
    """

    def __init__(self, elm: ELM, processor: Processor, dataset: ConversationDataset, cfg: RunConfig, out_dir: str | Path):
        self.elm, self.processor, self.dataset, self.cfg = elm, processor, dataset, cfg
        self.tc = cfg.train
        self.out_dir = Path(out_dir)
        self.dist = distributed.current()
        self.strategy = distributed.resolve_strategy(self.tc.strategy, self.dist.world_size)
        if self.dist.active and len(dataset) < self.global_batch_size:  # (one process takes all, as a smaller batch)
            raise ConfigError([f"{len(dataset)} training conversations cannot fill one global micro-batch of "
                               f"{self.global_batch_size} (train.batch_size {self.tc.batch_size} x {self.dist.world_size} "
                               "processes): lower train.batch_size"])  # fmt: skip
        self.device = distributed.rank_device(resolve_device(self.tc.device), self.dist)
        self.amp_dtype = resolve_dtype(self.tc.precision, self.device)
        if self.tc.num_threads:
            torch.set_num_threads(self.tc.num_threads)
        self.elm.to(self.device)
        if self.tc.resume_from:  # whole weights go in before FSDP shards them; moments and step in resume()
            load_checkpoint(self.tc.resume_from, self.elm, max_steps=self.tc.max_steps)
        self._speedups()
        self.model = distributed.wrap_model(self.elm, self.strategy, self.device, self.amp_dtype)
        self.collate = processor.train_collator(dataset, with_ecg=self.tc.ecg != "none", pack_to=self.tc.packing)
        self._lengths = np.array([len(e.input_ids) for e in getattr(self.collate, "encoded", [])])
        self.optimizer = self._optimizer()
        warmup = int(self.tc.warmup_ratio * self.tc.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, self.tc.max_steps, warmup, self.tc.min_lr_ratio)
        )
        self.step = 0
        self.losses: list[float] = []
        self.grad_norm = float("nan")
        self._order: tuple[int, np.ndarray] | None = None
        self.training_data: dict[str, Any] | None = None
        """Saved as training_data.json in every checkpoint (fold, folds digest, patients; set by the pipeline)."""
        self.run_dir: Path | None = None
        """The run folder: metrics.jsonl and the trackers of train.report_to write there (set by the pipeline;
        rank 0 only writes them)."""
        self.val_dataset: ConversationDataset | None = None
        """Held-out conversations (training patients never trained on) for the validation loss (set by the pipeline,
        on every rank: each computes the loss of its share)."""
        self.step_tokens = (0, 0)
        """(real tokens, label tokens) of the last step's batches, over all ranks."""
        self._val_collate = None
        self.real_tokens = self.computed_tokens = 0

    def _speedups(self) -> None:
        """Gradient checkpointing and torch.compile of the decoder layers, as configured (before wrapping)."""
        if self.tc.gradient_checkpointing:
            # non-reentrant: works with frozen embeddings (LoRA) without forcing inputs to require grad
            self.elm.base_llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.elm.base_llm.config.use_cache = False
        if self.tc.compile:
            for layer in distributed.decoder_layers(self.elm):
                layer.compile()

    def _optimizer(self) -> torch.optim.Optimizer:
        llm_params = [p for p in self.elm.llm.parameters() if p.requires_grad]
        new_params = [p for m in self.elm.trainable_modules().values() for p in m.parameters() if p.requires_grad]
        groups = [
            g for g in ({"params": llm_params, "lr": self.tc.lr}, {"params": new_params, "lr": self.tc.encoder_lr}) if g["params"]
        ]
        if not groups:
            raise RuntimeError("nothing to train: the LLM, encoder and projector are all frozen")
        # fused: one kernel for every parameter on CUDA (and it takes DTensor shards under FSDP2)
        return torch.optim.AdamW(groups, weight_decay=self.tc.weight_decay, fused=self.device.type == "cuda")

    # ------------------------------------------------------------ data order
    @property
    def global_batch_size(self) -> int:
        """Examples in one global micro-batch: batch_size on each of the world_size ranks."""
        return self.tc.batch_size * self.dist.world_size

    def micro_batches(self, step: int) -> list[list[int]]:
        """This rank's indices of the micro-batches of optimizer step ``step`` (its slice of each global one)."""
        r, bs = self.dist.rank, self.tc.batch_size
        return [g[r * bs : (r + 1) * bs] for g in self.global_micro_batches(step)]

    def global_micro_batches(self, step: int) -> list[list[int]]:
        """Indices of the global micro-batches of optimizer step ``step`` (deterministic in seed and step)."""
        n, gbs, acc = len(self.dataset), self.global_batch_size, self.tc.grad_accum_steps
        per_epoch = max(1, n // gbs)  # drop the ragged tail so every micro-batch has gbs examples
        out = []
        for m in range(step * acc, (step + 1) * acc):
            epoch, k = divmod(m, per_epoch)
            order = self._epoch_order(epoch, n, per_epoch * gbs)
            out.append(order[k * gbs : (k + 1) * gbs].tolist() or order[:gbs].tolist())
        return out

    def _epoch_order(self, epoch: int, n: int, used: int) -> np.ndarray:
        """The order of one epoch (its first ``used`` examples in micro-batch order), a pure function of (seed, epoch);
        the last one is cached. With ``train.group_by_length`` the examples of each window of that many micro-batches
        are sorted by length into micro-batches, whose order is shuffled again."""
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng(self.tc.seed + 1000003 * epoch)
            order = rng.permutation(n)
            if self.tc.group_by_length and len(self._lengths) == n:
                order = self._grouped(order[:used], rng)
            self._order = (epoch, order)
        return self._order[1]

    def _grouped(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return length_grouped(order, self._lengths, self.global_batch_size, self.tc.group_by_length, rng)

    # ------------------------------------------------------------ one step
    def accumulate(self, step: int) -> float:
        """Backward over this rank's micro-batches of the step; return the mean token loss of the global step.

        Each micro-batch's summed token loss is divided by the token count of the WHOLE global step (every
        micro-batch on every rank), so accumulating k micro-batches on N ranks gives the same gradient as one
        batch k x N times larger. DDP and FSDP average gradients over ranks, hence the factor world_size.
        """
        self.model.train()
        batches = [self.collate(ix) for ix in self.micro_batches(step)]
        local_tokens = sum(int((b.labels[:, 1:] != -100).sum()) for b in batches)
        total_tokens = max(1.0, distributed.all_reduce_sum([local_tokens], self.device)[0])
        scale = self.dist.world_size / total_tokens
        loss_local, real, computed = 0.0, 0, 0
        for i, b in enumerate(batches):
            b = b.to(self.device)
            real, computed = real + int(b.attention_mask.sum()), computed + b.attention_mask.numel()
            with distributed.set_gradient_sync(self.model, self.strategy, sync=i == len(batches) - 1):
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    loss_sum, _ = self.model(b.input_ids, b.attention_mask, b.labels, b.ecg, b.position_ids)
                (loss_sum * scale).backward()
            loss_local += loss_sum.item()
        loss_total, real, computed = distributed.all_reduce_sum([loss_local, real, computed], self.device)
        self.real_tokens, self.computed_tokens = self.real_tokens + int(real), self.computed_tokens + int(computed)
        self.step_tokens = (int(real), int(total_tokens))
        return loss_total / total_tokens

    def clip(self) -> float:
        """Clip the global gradient norm to ``max_grad_norm``; return the norm before clipping."""
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        limit = self.tc.max_grad_norm if self.tc.max_grad_norm > 0 else float("inf")
        # under FSDP the gradients are DTensor shards: the norm is computed over all of them (a collective)
        return float(distributed.full_tensor(torch.nn.utils.clip_grad_norm_(params, limit)))

    def train_step(self, step: int) -> float:
        loss = self.accumulate(step)
        self.grad_norm = self.clip()
        if not (math.isfinite(loss) and math.isfinite(self.grad_norm)):  # stop before the update poisons the weights
            raise NonFiniteError(
                f"training stopped at step {step + 1}/{self.tc.max_steps}: loss {loss}, gradient norm {self.grad_norm} "
                f"(lr {self.scheduler.get_last_lr()[0]:.3g}); lower train.lr / train.encoder_lr or set train.max_grad_norm"
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    # ------------------------------------------------------------ loop
    def resume(self, path: str | Path) -> None:
        """Continue from checkpoint ``path``: weights (already loaded when it is ``train.resume_from``), AdamW
        moments, step, schedule, this rank's RNG state. The checkpoint may come from another number of processes."""
        if not self.tc.resume_from or Path(path) != Path(self.tc.resume_from):  # (not under FSDP: weights are sharded)
            load_checkpoint(path, self.elm, max_steps=self.tc.max_steps)
        state = read_trainer_state(path, self.tc.max_steps)
        load_optimizer_state(path, self.elm, self.optimizer)
        self.step = int(state.get("step", 0))
        self.losses = list(state.get("losses", []))
        saved = state.get("global_batch_size")
        if isinstance(saved, int) and saved != self.global_batch_size:
            log.warning("%s was trained with global batch %d, this run has %d (train.batch_size %d x %d processes): the "
                        "batches from step %d on differ from an uninterrupted run", path, saved, self.global_batch_size,
                        self.tc.batch_size, self.dist.world_size, self.step)  # fmt: skip
        with warnings.catch_warnings():  # replaying the schedule before any optimizer step is intended here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for _ in range(self.step):  # LambdaLR is a pure function of the step count
                self.scheduler.step()
        restore_rng_state(path)  # last: dropout masks continue exactly where the interrupted run stopped
        log.info("resumed from %s at step %d", path, self.step)

    def save(self, name: str | None = None) -> Path:
        state = {"step": self.step, "losses": self.losses, "lr": [g["lr"] for g in self.optimizer.param_groups],
                 "global_batch_size": self.global_batch_size, "world_size": self.dist.world_size}  # fmt: skip
        extra = {TRAINING_DATA_FILE: self.training_data} if self.training_data else None
        return save_checkpoint(self.out_dir / (name or f"step-{self.step:06d}"), self.elm, self.cfg, self.optimizer, state, extra)

    def train(self) -> TrainResult:
        if self.tc.resume_from:
            self.resume(self.tc.resume_from)
        t0 = time.time()
        if self.dist.active:
            log.info("%s on %d processes: global micro-batch %d (%d per rank) x %d accumulation steps", self.strategy,
                     self.dist.world_size, self.global_batch_size, self.tc.batch_size, self.tc.grad_accum_steps)  # fmt: skip
        # rank 0 alone writes metrics.jsonl and feeds the trackers; every rank computes the validation loss (its share)
        tracker = None
        if self.run_dir is not None and self.dist.main:
            tracker = Tracker(self.run_dir, self.tc.report_to, self.cfg.to_dict(), self.step)
        bar = progress(range(self.step, self.tc.max_steps), desc="train", initial=self.step, total=self.tc.max_steps,
                       disable=not self.dist.main)  # fmt: skip
        try:
            for step in bar:
                lrs, t_step = [g["lr"] for g in self.optimizer.param_groups], time.perf_counter()
                loss = self.train_step(step)
                self.step = step + 1
                self.losses.append(loss)
                bar.set_postfix(loss=f"{loss:.3f}")
                self.after_step(tracker, loss, lrs, time.perf_counter() - t_step, time.time() - t0)
                if self.step % self.tc.log_every == 0 or self.step == self.tc.max_steps:
                    recent = self.losses[-self.tc.log_every :]
                    log.info("step %d/%d loss %.4f lr %.2e grad-norm %.3f real-tokens %.1f%%", self.step, self.tc.max_steps,
                             sum(recent) / len(recent), self.scheduler.get_last_lr()[0], self.grad_norm,
                             100 * self.real_token_fraction)  # fmt: skip
                if self.tc.save_every and self.step % self.tc.save_every == 0 and self.step < self.tc.max_steps:
                    self.save()
        finally:
            if tracker is not None:
                tracker.close()
        ckpt = self.save("final")
        return TrainResult(self.step, self.losses, time.time() - t0, str(ckpt), self.real_tokens, self.computed_tokens,
                           self.dist.world_size, self.strategy)  # fmt: skip

    @property
    def real_token_fraction(self) -> float:
        """Share of the computed token positions that were not padding, over this run's steps so far."""
        return self.real_tokens / self.computed_tokens if self.computed_tokens else float("nan")

    # ------------------------------------------------------------ tracking hooks
    def after_step(self, tracker: Tracker | None, loss: float, lrs: list[float], seconds: float, elapsed: float) -> None:
        """Called once after each optimizer step: the step's record (metrics.jsonl, trackers) and, when due,
        the validation loss (every ``train.eval_every`` steps and after the last)."""
        if tracker is None and self.val_dataset is None:
            return
        record = self.step_record(loss, lrs, seconds, elapsed)
        due = self.step == self.tc.max_steps or (self.tc.eval_every and self.step % self.tc.eval_every == 0)
        if self.val_dataset is not None and due:
            record.update(self.validation_loss())
            log.info("step %d/%d validation loss %.4f (%d held-out tokens)", self.step, self.tc.max_steps,
                     record["val_loss"], record["val_tokens"])  # fmt: skip
        if tracker is not None:
            tracker.log_step(record)

    def step_record(self, loss: float, lrs: list[float], seconds: float, elapsed: float) -> dict[str, Any]:
        """The step's line of metrics.jsonl (fields in ``ecg_bench.training.tracking``): tokens of all ranks, the
        memory of this rank."""
        llm_ids = {id(p) for p in self.elm.llm.parameters()}
        names = ["lr" if id(g["params"][0]) in llm_ids else "lr_new" for g in self.optimizer.param_groups]
        tokens, label_tokens = self.step_tokens
        examples = self.step * self.global_batch_size * self.tc.grad_accum_steps
        return {
            "step": self.step, "loss": loss, **dict(zip(names, lrs)), "grad_norm": self.grad_norm, "tokens": tokens,
            "label_tokens": label_tokens, "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "step_s": round(seconds, 4), "elapsed_s": round(elapsed, 2),
            "epoch": round(examples / max(1, len(self.dataset)), 4), **peak_memory_gb(self.device),
        }  # fmt: skip

    @torch.no_grad()
    def validation_loss(self) -> dict[str, float]:
        """Mean token loss over every held-out conversation (``val_dataset``), as training computes it; no RNG is
        drawn (eval mode), so an exact resume stays exact.

        With several processes each rank scores its share of the batches (batch i on rank i mod N) and the sums are
        added over ranks. Every rank runs the same number of forward passes (a rank short of a batch scores one
        conversation and discards it): FSDP gathers each layer's weights in a collective inside the forward pass."""
        if self._val_collate is None:
            self._val_collate = self.processor.train_collator(self.val_dataset, with_ecg=self.tc.ecg != "none")
        self.model.eval()
        loss_sum, tokens = 0.0, 0
        n, bs, world, rank = len(self.val_dataset), self.tc.batch_size, self.dist.world_size, self.dist.rank
        starts = list(range(0, n, bs))
        for r in range(0, len(starts), world):
            mine = r + rank < len(starts)
            start = starts[r + rank] if mine else 0
            b = self._val_collate(list(range(start, min(n, start + bs)) if mine else [0])).to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                s, _ = self.model(b.input_ids, b.attention_mask, b.labels, b.ecg, b.position_ids)
            if mine:
                loss_sum += float(s)
                tokens += int((b.labels[:, 1:] != -100).sum())
        loss_sum, tokens = distributed.all_reduce_sum([loss_sum, tokens], self.device)
        self.model.train()
        return {"val_loss": loss_sum / max(1, tokens), "val_tokens": int(tokens)}

def summarize(result: TrainResult) -> dict[str, Any]:
    first = result.losses[: max(1, len(result.losses) // 10)]
    last = result.losses[-max(1, len(result.losses) // 10) :]
    return {
        "steps": result.step,
        "seconds": round(result.seconds, 1),
        "loss_first": float(np.mean(first)) if first else None,
        "loss_last": float(np.mean(last)) if last else None,
        "checkpoint": result.checkpoint,
        "strategy": result.strategy,
        "world_size": result.world_size,
        "real_tokens": result.real_tokens,
        "computed_tokens": result.computed_tokens,
        "real_token_fraction": round(result.real_tokens / result.computed_tokens, 4) if result.computed_tokens else None,
    }
