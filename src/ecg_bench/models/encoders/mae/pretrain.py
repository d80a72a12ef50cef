"""``ecg-bench pretrain mae``: masked-autoencoder pretraining of st_mem / mtae / mlae on a segment store.

Each step takes ``batch_size`` segments through the ``signal`` representation (what the ELM feeds the encoder),
masks ``mask_ratio`` of each group's patches, and minimises the MSE of the reconstructed masked patches. The
masked loss of a fixed held batch (fixed masks) is measured before and after training and saved in
``encoder.json`` (``meta.eval_loss_start`` / ``eval_loss_end``). Output: an encoder folder (``weights.py``) that
``--model.encoder.weights`` loads, with the preprocessing contract of the store (fs, segment length, leads, scaling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ecg_bench.config import PretrainerOptions
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.mae.vit import LAYOUTS, OPTIONS, MaskedAutoencoder, SignalViT, ViTEncoderOptions
from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions, PretrainRun, check_options, options_json
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer
from ecg_bench.models.encoders.weights import write_encoder
from ecg_bench.signals.leads import LEADS

log = get_logger(__name__)
EVAL_BATCH = 32


@dataclass
class MAEPretrainOptions(PretrainerOptions):
    """Options of ``ecg-bench pretrain mae``."""

    store: str = field(default="", metadata={"required": True})
    """Segment store folder to pretrain on."""
    out: str = field(default="", metadata={"required": True})
    """Checkpoint folder to write (new or empty; with --loop.resume true, the run to continue)."""
    encoder: str = "st_mem"
    """st_mem (per-lead patches), mtae (time patches across leads) or mlae (one patch per lead)."""
    size: str = "tiny"
    """Encoder size: tiny, small, vit_small or base (ViT-B), as the encoder's ``size``."""
    patch_size: int = 0
    """Samples per patch (0 = about 25 patches per segment)."""
    scaling: str = "minmax"
    """Per-segment input scaling: minmax, zscore or none."""
    mask_ratio: float = 0.75
    """Fraction of patches masked."""
    norm_pix_loss: bool = False
    """Reconstruct z-scored patches (ST-MEM's configs) instead of the scaled signal."""
    num_samples: int = 0
    """Random segments of the store to use (0 = all)."""
    loop: PretrainLoopOptions = field(default_factory=PretrainLoopOptions)
    """Optimisation (flags --loop.steps, --loop.batch_size, --loop.lr, ...)."""

    def problems(self) -> list[str]:
        p = [] if self.encoder in LAYOUTS else [f"encoder must be one of {', '.join(LAYOUTS)}, got {self.encoder!r}"]
        if self.num_samples < 0:
            p.append(f"num_samples must be >= 0 (0 = all), got {self.num_samples}")
        if self.encoder in LAYOUTS:  # the encoder's own checks (size, patch_size, scaling, mask_ratio)
            p += self.encoder_options().problems()
        return p

    def encoder_options(self) -> ViTEncoderOptions:
        """The options of the encoder being pretrained."""
        return OPTIONS[self.encoder](size=self.size, patch_size=self.patch_size, scaling=self.scaling, mask_ratio=self.mask_ratio,
                                     norm_pix_loss=self.norm_pix_loss)  # fmt: skip


def store_signals(store, indices: np.ndarray) -> torch.Tensor:
    """``[B, 12, L]`` float32 through the ``signal`` representation (lead means removed, clipped)."""
    from ecg_bench.representations.signal import SignalRepresentation

    rep = SignalRepresentation()
    return torch.stack([rep(s) for s in store.signals(np.sort(indices))])


def masked_loss(mae: MaskedAutoencoder, x: torch.Tensor, seed: int) -> float:
    """Masked reconstruction loss of ``x`` with masks drawn from ``seed`` (eval mode, no gradient)."""
    mae.eval()
    with torch.no_grad():
        return float(mae(x, torch.Generator().manual_seed(seed))["loss"])


def pretrain_mae(opts: MAEPretrainOptions) -> dict:
    """Pretrain and save; returns ``{"losses", "eval_loss_start", "eval_loss_end", "out"}``."""
    from ecg_bench.data.store import SegmentStore

    check_options("mae", opts, required=("store", "out"))
    vopts, loop = opts.encoder_options(), opts.loop
    store = SegmentStore(opts.store)
    n = len(store)
    pool = np.arange(n) if opts.num_samples <= 0 else np.sort(np.random.default_rng(loop.seed).choice(n, min(n, opts.num_samples), replace=False))
    torch.manual_seed(loop.seed)
    enc = SignalViT(opts.encoder, vopts, len(LEADS), store.segment_len)
    mae = MaskedAutoencoder(enc)
    held = store_signals(store, pool[:EVAL_BATCH])
    start = masked_loss(mae, held, loop.seed)
    contract = PreprocessingContract(float(store.fs), store.segment_len, tuple(LEADS), vopts.scaling)
    run: PretrainRun

    def loss_of(idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {"loss": mae(store_signals(store, pool[idx]).to(run.device))["loss"]}

    def write(folder: Path, meta: dict) -> None:
        write_encoder(folder, opts.encoder, enc.architecture(), enc.state_dict(), contract,
                      {**meta, "store": str(store.path), "objective": "mae"})  # fmt: skip

    run = PretrainRun(mae, loss_of, len(pool), loop, opts.out, options_json(opts, loop) | {"loop": None}, write, f"mae/{opts.encoder}")
    run.meta.setdefault("eval_loss_start", start)
    losses = run.train()
    end = masked_loss(mae.cpu(), held, loop.seed)
    run.meta["eval_loss_end"] = end
    run.save()
    log.info("mae/%s: held-out masked loss %.4f -> %.4f; saved %s", opts.encoder, run.meta["eval_loss_start"], end, opts.out)
    return {"losses": losses, "eval_loss_start": run.meta["eval_loss_start"], "eval_loss_end": end, "out": opts.out}


def run(opts: MAEPretrainOptions) -> str:
    r = pretrain_mae(opts)
    return (f"mae/{opts.encoder} ({opts.size}): masked reconstruction loss on a held batch "
            f"{r['eval_loss_start']:.4f} -> {r['eval_loss_end']:.4f} after {len(r['losses'])} steps -> {r['out']}")  # fmt: skip


PRETRAINERS.register("mae", options=MAEPretrainOptions)(
    Pretrainer(MAEPretrainOptions, run, "masked-autoencoder pretraining of the st_mem, mtae or mlae encoder on a store")
)
