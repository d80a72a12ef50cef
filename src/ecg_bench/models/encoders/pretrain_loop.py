"""The loop shared by the encoder pretrainers (``pretrain mae``, ``pretrain merl``, ``pretrain clip``): AdamW,
warmup + cosine, bf16 autocast where the device supports it, progress as log lines, checkpoints, exact resume.
Device, autocast dtype and schedule are the fine-tuning trainer's (``ecg_bench.devices``).

Determinism makes resume exact without saving RNG or loader state: the batch order of an epoch is a pure function of
(seed, epoch) and every step reseeds torch with (seed, step) before it draws masks or dropout. The checkpoint
folder (``out``) is replaced atomically at each save (``folders.make_temp`` + ``replace``; kind ``checkpoint``):
the encoder files (``weights.py``), the whole model (``pretrain_model.safetensors``: encoder + decoder / heads),
the optimizer moments (``pretrain_optimizer.safetensors``) and ``pretrain_state.json`` (step, losses, options).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from ecg_bench import folders, run_lock
from ecg_bench.devices import resolve_device, resolve_dtype, warmup_cosine
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger
from ecg_bench.safe_files import load_safetensors, read_json_file

log = get_logger(__name__)

STATE_FILE, MODEL_FILE, OPTIM_FILE = "pretrain_state.json", "pretrain_model.safetensors", "pretrain_optimizer.safetensors"


@dataclass
class PretrainLoopOptions:
    """Optimisation options of an encoder pretraining run."""

    steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 32
    """Segments per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warmup, cosine decay to 0)."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    warmup_ratio: float = 0.05
    """Fraction of the steps spent warming up."""
    seed: int = 0
    """Seed of initialisation, batch order, masks and dropout."""
    log_every: int = 50
    """Steps between progress log lines."""
    save_every: int = 0
    """Steps between checkpoints (0 = only at the end)."""
    resume: bool = False
    """Continue the run saved in ``out`` (same options) from its last checkpoint."""
    device: str = "auto"
    """auto (CUDA if available), cpu, cuda, cuda:N."""
    precision: str = "auto"
    """auto (bf16 autocast on CUDA devices that support it, else fp32), fp32, bf16."""
    num_threads: int = 0
    """CPU threads of torch during the run (0 = torch's default; 1 is much faster on a busy shared CPU), as
    ``train.num_threads``."""

    def problems(self) -> list[str]:
        """Range checks (messages name the flag: ``loop.steps``)."""
        p = [f"loop.{k} must be >= 1, got {getattr(self, k)}" for k in ("steps", "batch_size", "log_every") if getattr(self, k) < 1]
        if self.lr <= 0:
            p.append(f"loop.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            p.append(f"loop.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_ratio < 1:
            p.append(f"loop.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.save_every < 0:
            p.append(f"loop.save_every must be >= 0, got {self.save_every}")
        if self.num_threads < 0:
            p.append(f"loop.num_threads must be >= 0 (0 = torch's default), got {self.num_threads}")
        if self.precision not in ("auto", "fp32", "bf16"):
            p.append(f"loop.precision must be auto, fp32 or bf16, got {self.precision!r}")
        return p


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of step ``step``: epochs of a (seed, epoch)-seeded permutation, ragged tail dropped."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch_size : (k + 1) * batch_size] if n >= batch_size else order


def _optimizer_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    names = {p: n for n, p in model.named_parameters()}
    out = {}
    for p, st in opt.state.items():
        for key, value in st.items():
            out[f"{names[p]}::{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def _load_optimizer(model: nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], where: Path) -> None:
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        name, _, field = key.rpartition("::")
        if name not in params:
            raise DataError(f"{where}: optimizer state {key!r} names no parameter of the model built from the options")
        p = params[name]
        opt.state[p][field] = value if field == "step" else value.to(p.device)


class PretrainRun:
    """Runs ``loss_of(indices) -> {"loss": ..., parts}`` for ``loop.steps`` steps over ``n`` items, saving to ``out``.

    ``write_encoder(folder, meta)`` writes the encoder's own files into a checkpoint folder; ``options`` (a JSON
    dict) is saved and must be equal on ``--loop.resume``.
    """

    def __init__(self, model: nn.Module, loss_of: Callable[[np.ndarray], dict[str, torch.Tensor]], n: int,
                 loop: PretrainLoopOptions, out: str | Path, options: dict[str, Any],
                 write_encoder: Callable[[Path, dict[str, Any]], None], name: str):  # fmt: skip
        if n < 1:
            raise DataError(f"{name} pretraining: the store holds no segments")
        self.model, self.loss_of, self.n, self.loop, self.out = model, loss_of, n, loop, Path(out)
        self.options, self.write_encoder, self.name = json.loads(json.dumps(options)), write_encoder, name
        self.device = resolve_device(loop.device, "loop.device")
        self.amp = resolve_dtype(loop.precision, self.device, "loop.precision")
        self.model.to(self.device)
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=loop.lr,
                                     weight_decay=loop.weight_decay, betas=(0.9, 0.95))  # fmt: skip
        warmup = int(loop.warmup_ratio * loop.steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: warmup_cosine(s, loop.steps, warmup))
        self.step, self.losses, self.extra_meta = 0, [], {}
        self.meta: dict[str, Any] = {}

    def _check_out(self) -> None:
        folders.check_replaceable(self.out, "checkpoint")
        state = self.out / STATE_FILE
        if self.loop.resume:
            if not state.is_file():
                raise DataError(f"--loop.resume: {self.out} holds no {self.name} pretraining checkpoint ({STATE_FILE} not found)")
            return
        if state.is_file() or (self.out.exists() and not folders.is_empty(self.out)):
            raise ConfigError([f"--out {self.out} already holds a checkpoint: pass --loop.resume true to continue it, or "
                               "choose a new folder (a run never writes over another)"])  # fmt: skip

    def _resume(self) -> None:
        st = read_json_file(self.out / STATE_FILE, "pretraining state")
        if st.get("options") != self.options:
            diff = sorted(k for k in set(st.get("options", {})) | set(self.options)
                          if st.get("options", {}).get(k) != self.options.get(k))  # fmt: skip
            raise ConfigError([f"--loop.resume: {self.out} was trained with other options ({', '.join(diff)} differ)"])
        tensors = load_safetensors(self.out / MODEL_FILE)
        self.model.load_state_dict({k: v.to(self.device) for k, v in tensors.items()}, strict=False)
        _load_optimizer(self.model, self.opt, load_safetensors(self.out / OPTIM_FILE), self.out / OPTIM_FILE)
        self.step, self.losses, self.meta = int(st["step"]), list(st["losses"]), dict(st.get("meta", {}))
        with warnings.catch_warnings():  # replaying the schedule before any optimizer step is intended here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for _ in range(self.step):
                self.sched.step()
        log.info("%s: resumed from %s at step %d/%d", self.name, self.out, self.step, self.loop.steps)

    def save(self) -> Path:
        tmp = folders.make_temp(self.out, "checkpoint")
        meta = {**self.meta, "step": self.step, "loss_last": self.losses[-1] if self.losses else None}
        self.write_encoder(tmp, meta)
        state = {k: v for k, v in self.model.state_dict().items()}
        save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()}, str(tmp / MODEL_FILE))
        save_file(_optimizer_tensors(self.model, self.opt), str(tmp / OPTIM_FILE))
        doc = {"step": self.step, "losses": self.losses, "options": self.options, "meta": self.meta}
        (tmp / STATE_FILE).write_text(json.dumps(doc) + "\n")
        return folders.replace(tmp, self.out, "checkpoint")

    def train(self) -> list[float]:
        threads = torch.get_num_threads()
        if self.loop.num_threads:
            torch.set_num_threads(self.loop.num_threads)
        try:
            folders.check_replaceable(self.out, "checkpoint")  # never a lock file beside a folder that is refused
            self.out.parent.mkdir(parents=True, exist_ok=True)
            with run_lock.hold(self.out, "a pretraining output", lock_file=self.out.with_name(f"{self.out.name}.lock")):
                return self._train()  # one writer: the folder is replaced at every save, so it is locked beside it
        finally:
            torch.set_num_threads(threads)

    def _train(self) -> list[float]:
        self._check_out()
        if self.loop.resume:
            self._resume()
        t0, last = time.time(), {}
        while self.step < self.loop.steps:
            torch.manual_seed(self.loop.seed * 1_000_003 + self.step)  # masks and dropout: a function of the step
            self.model.train()
            idx = batch_indices(self.n, self.loop.batch_size, self.step, self.loop.seed)
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                parts = self.loss_of(idx)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise DataError(f"{self.name} pretraining: non-finite loss at step {self.step + 1}; lower --lr")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
            self.step += 1
            self.losses.append(loss.item())
            last = {k: v.item() for k, v in parts.items() if v.ndim == 0}
            if self.step % self.loop.log_every == 0 or self.step == self.loop.steps:
                recent = self.losses[-self.loop.log_every :]
                log.info("%s step %d/%d loss %.4f (%s) lr %.2e %.1f s", self.name, self.step, self.loop.steps,
                         sum(recent) / len(recent), ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "loss"),
                         self.sched.get_last_lr()[0], time.time() - t0)  # fmt: skip
            if self.loop.save_every and self.step % self.loop.save_every == 0 and self.step < self.loop.steps:
                self.save()
        self.meta["seconds"] = round(self.meta.get("seconds", 0.0) + time.time() - t0, 1)
        self.save()
        return self.losses


def check_options(name: str, opts: Any, required: tuple[str, ...] = ()) -> None:
    """Every problem of pretrainer ``name``'s options (required fields, its range checks, ``loop``'s) in one
    ConfigError, before any work (options built in Python skip ``config.build``'s checks)."""
    p = [f"pretrain {name} needs --{k}" for k in required if not getattr(opts, k)]
    p += opts.problems() + opts.loop.problems()
    if p:
        raise ConfigError(p)


_NOT_COMPARED = ("resume", "log_every", "save_every", "device", "num_threads", "steps")
"""Options a resumed run may change: where and how fast it runs, how it reports, how long it runs."""


def options_json(*objs: Any) -> dict[str, Any]:
    """The options of a run as one flat JSON dict: what ``--loop.resume`` compares (not steps: a run may be extended)."""
    out: dict[str, Any] = {}
    for o in objs:
        out.update({k: v for k, v in asdict(o).items() if k not in _NOT_COMPARED})
    return out
