"""``ecg-bench pretrain merl`` (CMA + UMA on a store's segments and their records' reports) and the ``merl``
encoder builder (ENCODERS), which loads an encoder folder and checks its preprocessing contract."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecg_bench.config import PretrainerOptions
from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.mae.encoder import run_contract
from ecg_bench.models.encoders.mae.pretrain import store_signals
from ecg_bench.models.encoders.merl.model import Merl, load_text_tower
from ecg_bench.models.encoders.merl.resnet import MerlOptions, ResNet1d
from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions, PretrainRun, check_options, options_json
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer
from ecg_bench.models.encoders.weights import contract_of, load_state, read_encoder, write_encoder
from ecg_bench.signals.leads import LEADS

log = get_logger(__name__)
EVAL_BATCH = 32


def build_merl(opts: MerlOptions, spec: EncoderSpec) -> ResNet1d:
    """The ``merl`` ECG tower for ``spec``; pretrained from ``opts.weights`` when set (contract checked)."""
    if opts.weights:
        doc, tensors = read_encoder(opts.weights, "merl")
        contract_of(doc, opts.weights).check(run_contract(spec, opts.scaling), opts.weights)
        opts = dataclasses.replace(opts, size=doc["architecture"]["options"]["size"])
        enc = ResNet1d(opts, spec.in_leads, spec.seq_len, opts.num_tokens)
        load_state(enc, tensors, opts.weights)
        enc.weights_folder = opts.weights
    else:
        enc = ResNet1d(opts, spec.in_leads, spec.seq_len, opts.num_tokens)
    if opts.freeze:  # the ELM also leaves it untrained (model.encoder.freeze)
        enc.requires_grad_(False)
    return enc


@ENCODERS.register("merl", options=MerlOptions)
def merl(opts: MerlOptions, spec: EncoderSpec) -> nn.Module:
    """MERL's ECG tower (1-D bottleneck ResNet)."""
    return build_merl(opts, spec)


@dataclass
class MerlPretrainOptions(PretrainerOptions):
    """Options of ``ecg-bench pretrain merl``."""

    store: str = field(default="", metadata={"required": True})
    """Segment store folder; each segment is paired with its record's report."""
    out: str = field(default="", metadata={"required": True})
    """Checkpoint folder to write (new or empty; with --loop.resume true, the run to continue)."""
    text_model: str = "ncbi/MedCPT-Query-Encoder"
    """Hugging Face text encoder: hub id or local folder (MERL: MedCPT-Query-Encoder)."""
    text_frozen_layers: int = 6
    """Transformer layers of the text model kept frozen, from the bottom (MERL: 6)."""
    size: str = "tiny"
    """ECG tower: tiny, resnet50 or base (ResNet-101)."""
    scaling: str = "minmax"
    """Per-segment input scaling: minmax (as MERL), zscore, none."""
    proj_dim: int = 256
    """Width of the shared ECG-text space."""
    num_samples: int = 0
    """Random segments of the store to use (0 = all with a report)."""
    loop: PretrainLoopOptions = field(default_factory=PretrainLoopOptions)
    """Optimisation (flags --loop.steps, --loop.batch_size, --loop.lr, ...)."""

    def problems(self) -> list[str]:
        p = [f"{m} (the ECG tower's)" for m in MerlOptions(size=self.size, scaling=self.scaling).problems()]
        if self.proj_dim < 4 or self.proj_dim % 4:
            p.append(f"proj_dim must be a positive multiple of 4 (4 attention heads), got {self.proj_dim}")
        if self.text_frozen_layers < 0 or self.num_samples < 0:
            p.append(f"text_frozen_layers and num_samples must be >= 0, got {self.text_frozen_layers}, {self.num_samples}")
        return p


def pretrain_merl(opts: MerlPretrainOptions) -> dict:
    """Pretrain and save; returns ``{"losses", "eval_loss_start", "eval_loss_end", "out"}`` (CMA + UMA, held batch)."""
    from ecg_bench.data.store import SegmentStore
    from ecg_bench.safe_files import safetensors_only

    check_options("merl", opts, required=("store", "out", "text_model"))
    safetensors_only(opts.text_model, f"text model {opts.text_model!r}")  # a pickled .bin is refused before any work
    mopts, loop = MerlOptions(size=opts.size, scaling=opts.scaling), opts.loop
    store = SegmentStore(opts.store)
    reports = [str(row.get("report") or "").strip() for row in store.index]
    pool = np.flatnonzero([bool(r) for r in reports])
    if len(pool) < 2:
        raise DataError(f"{store.path}: {len(pool)} segments have a report; MERL pretraining needs reports (index.jsonl 'report')")
    if 0 < opts.num_samples < len(pool):
        pool = np.sort(np.random.default_rng(loop.seed).choice(pool, opts.num_samples, replace=False))
    torch.manual_seed(loop.seed)
    text, tokenizer = load_text_tower(opts.text_model)
    enc = ResNet1d(mopts, len(LEADS), store.segment_len)
    model = Merl(enc, text, tokenizer, opts.proj_dim, text_frozen_layers=opts.text_frozen_layers)
    contract = PreprocessingContract(float(store.fs), store.segment_len, tuple(LEADS), mopts.scaling)
    held = pool[:EVAL_BATCH]
    run: PretrainRun

    def batch(idx: np.ndarray):
        idx = np.sort(idx)
        return store_signals(store, idx), [reports[i] for i in idx]

    def held_loss() -> float:
        """CMA + UMA of the held batch with batch statistics in BatchNorm (as in training; running statistics are
        left untouched) and fixed dropout masks: comparable before and after training."""
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        model.train()
        for m in bns:
            m.momentum = 0.0
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(loop.seed)
                x, r = batch(held)
                return float(model.losses(x.to(next(model.parameters()).device), r)["loss"])
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom

    def loss_of(idx: np.ndarray) -> dict[str, torch.Tensor]:
        x, r = batch(pool[idx])
        return model.losses(x.to(run.device), r)

    def write(folder: Path, meta: dict) -> None:
        write_encoder(folder, "merl", enc.architecture(), enc.state_dict(), contract,
                      {**meta, "store": str(store.path), "objective": "merl", "text_model": opts.text_model})  # fmt: skip

    start = held_loss()
    run = PretrainRun(model, loss_of, len(pool), loop, opts.out, options_json(opts, loop) | {"loop": None}, write, "merl")
    run.meta.setdefault("eval_loss_start", start)
    losses = run.train()
    run.meta["eval_loss_end"] = end = held_loss()
    run.save()
    log.info("merl: held-batch CMA + UMA loss %.4f -> %.4f; saved %s", run.meta["eval_loss_start"], end, opts.out)
    return {"losses": losses, "eval_loss_start": run.meta["eval_loss_start"], "eval_loss_end": end, "out": opts.out,
            "model": model}  # fmt: skip


def run(opts: MerlPretrainOptions) -> str:
    r = pretrain_merl(opts)
    return (f"merl ({opts.size}): CMA + UMA loss on a held batch {r['eval_loss_start']:.4f} -> {r['eval_loss_end']:.4f} "
            f"after {len(r['losses'])} steps -> {r['out']}")  # fmt: skip


PRETRAINERS.register("merl", options=MerlPretrainOptions)(
    Pretrainer(MerlPretrainOptions, run, "MERL: ECG-report contrastive (CMA) + ECG-ECG (UMA) pretraining of the merl ResNet")
)
