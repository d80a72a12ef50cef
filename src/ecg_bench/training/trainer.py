"""Single-process trainer: AdamW with two learning rates, warmup + cosine, gradient accumulation,
clipping, bf16 autocast where the device supports it, folder checkpoints and exact resume.

Data order is a pure function of (seed, epoch), so resuming at step k replays exactly the batches an
uninterrupted run would have seen from step k on; no data-loader state needs saving. The checkpoint holds
every RNG state (python, numpy, torch CPU and CUDA), restored on resume, so dropout masks match too.
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
from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.logging_utils import get_logger, progress
from ecg_bench.models.elm import ELM, Processor
from ecg_bench.training.checkpoint import TRAINING_DATA_FILE, load_checkpoint, restore_rng_state, save_checkpoint
from ecg_bench.training.tracking import Tracker, peak_memory_gb

log = get_logger(__name__)


class NonFiniteError(ECGBenchError):
    """Training produced a NaN or infinite loss or gradient norm; the step's update is not applied."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError([f"train.device {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps"]) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([f"train.device={name!r} but no CUDA device is available"])
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError([f"train.device={name!r} but there are {torch.cuda.device_count()} CUDA devices"])
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError([f"train.device={name!r} but MPS is not available"])
    return dev


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and device.type == "cuda" and not bf16_ok:
        raise ConfigError([f"train.precision='bf16' but {torch.cuda.get_device_name(device)} does not support bf16"])
    if precision == "auto":
        return torch.bfloat16 if bf16_ok else None
    return torch.bfloat16  # explicit bf16 on CPU: autocast supports it (slow on most CPUs)


def lr_lambda(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    checkpoint: str = ""


class Trainer:
    """Trains ``elm`` on ``dataset`` as configured by ``cfg.train``; checkpoints go to ``out_dir``.

    ``processor`` (from ``build_elm``) turns the conversations and their ECGs into batches.
    """

    def __init__(self, elm: ELM, processor: Processor, dataset: ConversationDataset, cfg: RunConfig, out_dir: str | Path):
        self.elm, self.processor, self.dataset, self.cfg = elm, processor, dataset, cfg
        self.tc = cfg.train
        self.out_dir = Path(out_dir)
        self.device = resolve_device(self.tc.device)
        self.amp_dtype = resolve_dtype(self.tc.precision, self.device)
        if self.tc.num_threads:
            torch.set_num_threads(self.tc.num_threads)
        self.elm.to(self.device)
        self.collate = processor.train_collator(dataset, with_ecg=self.tc.ecg != "none")
        self.optimizer = self._optimizer()
        warmup = int(self.tc.warmup_ratio * self.tc.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_lambda(s, self.tc.max_steps, warmup, self.tc.min_lr_ratio)
        )
        self.step = 0
        self.losses: list[float] = []
        self.grad_norm = float("nan")
        self._order: tuple[int, np.ndarray] | None = None
        self.training_data: dict[str, Any] | None = None
        """Saved as training_data.json in every checkpoint (fold, folds digest, patients; set by the pipeline)."""
        self.run_dir: Path | None = None
        """The run folder: metrics.jsonl and the trackers of train.report_to write there (set by the pipeline)."""
        self.val_dataset: ConversationDataset | None = None
        """Held-out conversations (training patients never trained on) for the validation loss (set by the pipeline)."""
        self.step_tokens = (0, 0)
        """(real tokens, label tokens) of the last step's batches."""
        self._val_collate = None

    def _optimizer(self) -> torch.optim.Optimizer:
        llm_params = [p for p in self.elm.llm.parameters() if p.requires_grad]
        new_params = [p for m in self.elm.trainable_modules().values() for p in m.parameters() if p.requires_grad]
        groups = [
            g for g in ({"params": llm_params, "lr": self.tc.lr}, {"params": new_params, "lr": self.tc.encoder_lr}) if g["params"]
        ]
        if not groups:
            raise RuntimeError("nothing to train: the LLM, encoder and projector are all frozen")
        return torch.optim.AdamW(groups, weight_decay=self.tc.weight_decay)

    # ------------------------------------------------------------ data order
    def micro_batches(self, step: int) -> list[list[int]]:
        """Indices of the micro-batches of optimizer step ``step`` (deterministic in seed and step)."""
        n, bs, acc = len(self.dataset), self.tc.batch_size, self.tc.grad_accum_steps
        per_epoch = max(1, n // bs)  # drop the ragged tail so every micro-batch has bs examples
        out = []
        for m in range(step * acc, (step + 1) * acc):
            epoch, k = divmod(m, per_epoch)
            order = self._epoch_order(epoch, n)
            out.append(order[k * bs : (k + 1) * bs].tolist() or order[:bs].tolist())
        return out

    def _epoch_order(self, epoch: int, n: int) -> np.ndarray:
        """The shuffled order of one epoch, a pure function of (seed, epoch); the last one is cached."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng(self.tc.seed + 1000003 * epoch).permutation(n))
        return self._order[1]

    # ------------------------------------------------------------ one step
    def accumulate(self, step: int) -> float:
        """Backward over the step's micro-batches; return the mean token loss of the step.

        Each micro-batch's summed token loss is divided by the token count of the WHOLE step, so
        accumulating k micro-batches gives the same gradient as one batch k times larger.
        """
        self.elm.train()
        batches = [self.collate(ix) for ix in self.micro_batches(step)]
        total_tokens = max(1, sum(int((b.labels[:, 1:] != -100).sum()) for b in batches))
        self.step_tokens = (sum(int(b.attention_mask.sum()) for b in batches), total_tokens)
        loss_total = 0.0
        for b in batches:
            b = b.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss_sum, _ = self.elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
            (loss_sum / total_tokens).backward()
            loss_total += loss_sum.item()
        return loss_total / total_tokens

    def clip(self) -> float:
        """Clip the global gradient norm to ``max_grad_norm``; return the norm before clipping."""
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        limit = self.tc.max_grad_norm if self.tc.max_grad_norm > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, limit))

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
        state = load_checkpoint(path, self.elm, self.optimizer, max_steps=self.tc.max_steps)
        self.step = int(state.get("step", 0))
        self.losses = list(state.get("losses", []))
        with warnings.catch_warnings():  # replaying the schedule before any optimizer step is intended here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for _ in range(self.step):  # LambdaLR is a pure function of the step count
                self.scheduler.step()
        restore_rng_state(path)  # last: dropout masks continue exactly where the interrupted run stopped
        log.info("resumed from %s at step %d", path, self.step)

    def save(self, name: str | None = None) -> Path:
        state = {"step": self.step, "losses": self.losses, "lr": [g["lr"] for g in self.optimizer.param_groups]}
        extra = {TRAINING_DATA_FILE: self.training_data} if self.training_data else None
        return save_checkpoint(self.out_dir / (name or f"step-{self.step:06d}"), self.elm, self.cfg, self.optimizer, state, extra)

    def train(self) -> TrainResult:
        if self.tc.resume_from:
            self.resume(self.tc.resume_from)
        t0 = time.time()
        tracker = Tracker(self.run_dir, self.tc.report_to, self.cfg.to_dict(), self.step) if self.run_dir else None
        bar = progress(range(self.step, self.tc.max_steps), desc="train", initial=self.step, total=self.tc.max_steps)
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
                    log.info("step %d/%d loss %.4f lr %.2e grad-norm %.3f", self.step, self.tc.max_steps,
                             sum(recent) / len(recent), self.scheduler.get_last_lr()[0], self.grad_norm)  # fmt: skip
                if self.tc.save_every and self.step % self.tc.save_every == 0 and self.step < self.tc.max_steps:
                    self.save()
        finally:
            if tracker is not None:
                tracker.close()
        ckpt = self.save("final")
        return TrainResult(self.step, self.losses, time.time() - t0, str(ckpt))

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
        """The step's line of metrics.jsonl (fields in ``ecg_bench.training.tracking``)."""
        llm_ids = {id(p) for p in self.elm.llm.parameters()}
        names = ["lr" if id(g["params"][0]) in llm_ids else "lr_new" for g in self.optimizer.param_groups]
        tokens, label_tokens = self.step_tokens
        examples = self.step * self.tc.batch_size * self.tc.grad_accum_steps
        return {
            "step": self.step, "loss": loss, **dict(zip(names, lrs)), "grad_norm": self.grad_norm, "tokens": tokens,
            "label_tokens": label_tokens, "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
            "step_s": round(seconds, 4), "elapsed_s": round(elapsed, 2),
            "epoch": round(examples / max(1, len(self.dataset)), 4), **peak_memory_gb(self.device),
        }  # fmt: skip

    @torch.no_grad()
    def validation_loss(self) -> dict[str, float]:
        """Mean token loss over every held-out conversation (``val_dataset``), as training computes it; no RNG is
        drawn (eval mode), so an exact resume stays exact."""
        if self._val_collate is None:
            self._val_collate = self.processor.train_collator(self.val_dataset, with_ecg=self.tc.ecg != "none")
        self.elm.eval()
        loss_sum, tokens = 0.0, 0
        n, bs = len(self.val_dataset), self.tc.batch_size
        for start in range(0, n, bs):
            b = self._val_collate(list(range(start, min(n, start + bs)))).to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                s, _ = self.elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
            loss_sum += float(s)
            tokens += int((b.labels[:, 1:] != -100).sum())
        self.elm.train()
        return {"val_loss": loss_sum / max(1, tokens), "val_tokens": tokens}


def summarize(result: TrainResult) -> dict[str, Any]:
    first = result.losses[: max(1, len(result.losses) // 10)]
    last = result.losses[-max(1, len(result.losses) // 10) :]
    return {
        "steps": result.step,
        "seconds": round(result.seconds, 1),
        "loss_first": float(np.mean(first)) if first else None,
        "loss_last": float(np.mean(last)) if last else None,
        "checkpoint": result.checkpoint,
    }
