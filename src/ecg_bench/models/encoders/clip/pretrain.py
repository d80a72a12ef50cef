"""``ecg-bench pretrain clip``: image-report contrastive pretraining of a vision encoder (vit, clip, siglip, siglip2)
on a store's segments, drawn on the fly by the ``image`` (or ``stacked``) representation, and their records' reports.

The vision tower is saved as an encoder folder (``encoder.safetensors`` + ``encoder.json``: the model's config and
its image processor's normalization, and the preprocessing contract with the representation's drawing options)
that an ELM loads with ``--model.encoder.type FAMILY --model.encoder.weights DIR`` (``vision.py`` checks the
contract against the run's data and ``model.representation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ecg_bench.config import PretrainerOptions, RepresentationOptions, choice, to_dict
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.encoders.base import EncoderSpec
from ecg_bench.models.encoders.clip.model import LOSSES, ImageReport
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.merl.model import TEXT_POOLINGS, load_text_tower
from ecg_bench.models.encoders.pretrain_loop import PretrainLoopOptions, PretrainRun, check_options, options_json
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer
from ecg_bench.models.encoders.vision import DEFAULT_MODELS, drawing_options, load_hf
from ecg_bench.models.encoders.weights import write_encoder
from ecg_bench.representations.base import REPRESENTATIONS, build_representation
from ecg_bench.signals.leads import LEADS

log = get_logger(__name__)
EVAL_BATCH = 32


@dataclass
class ClipPretrainOptions(PretrainerOptions):
    """Options of ``ecg-bench pretrain clip``."""

    store: str = field(default="", metadata={"required": True})
    """Segment store folder; each segment, drawn as a picture, is paired with its record's report."""
    out: str = field(default="", metadata={"required": True})
    """Checkpoint folder to write (new or empty; with --loop.resume true, the run to continue)."""
    encoder: str = "clip"
    """Vision encoder to pretrain: vit, clip, siglip or siglip2 (the folder loads as --model.encoder.type ENCODER)."""
    vision_model: str = ""
    """Hub id or local folder of the vision model to start from, with its image processor (empty = the encoder's
    default, e.g. openai/clip-vit-base-patch32 for clip)."""
    text_model: str = "ncbi/MedCPT-Query-Encoder"
    """Hugging Face text encoder (BERT-like): hub id or local folder (as MERL's)."""
    text_frozen_layers: int = 6
    """Transformer layers of the text model kept frozen, from the bottom (as MERL)."""
    max_text_len: int = 128
    """Report tokens read by the text model (at most its max_position_embeddings)."""
    text_pooling: str = "cls"
    """The report's vector: cls (the last layer's first token, MedCPT's documented embedding), pooler (the model's
    pooler output, as MERL) or mean (masked mean of the last layer's tokens)."""
    loss: str = "auto"
    """clip (symmetric InfoNCE, learned temperature), sigmoid (SigLIP's pairwise sigmoid loss, learned temperature
    and bias) or auto (sigmoid for siglip and siglip2, clip for clip and vit)."""
    proj_dim: int = 256
    """Width of the shared image-report space."""
    representation: RepresentationOptions = field(default_factory=lambda: choice(RepresentationOptions, "image"))
    """How a segment is drawn: --representation.type image (default) or stacked, with its options
    (--representation.layout, --representation.augment true, ...); an ELM using the tower must draw the same."""
    num_samples: int = 0
    """Random segments of the store to use (0 = all with a report)."""
    loop: PretrainLoopOptions = field(default_factory=PretrainLoopOptions)
    """Optimisation (flags --loop.steps, --loop.batch_size, --loop.lr, ...)."""

    def loss_name(self) -> str:
        """The loss ``loss`` chooses (``auto``: SigLIP's sigmoid loss for the SigLIP towers, else CLIP's InfoNCE)."""
        if self.loss != "auto":
            return self.loss
        return "sigmoid" if self.encoder in ("siglip", "siglip2") else "clip"

    def problems(self) -> list[str]:
        p = []
        if self.encoder not in DEFAULT_MODELS:
            p.append(f"encoder must be one of {', '.join(DEFAULT_MODELS)}, got {self.encoder!r}")
        if self.text_pooling not in TEXT_POOLINGS:
            p.append(f"text_pooling must be one of {', '.join(TEXT_POOLINGS)}, got {self.text_pooling!r}")
        if self.loss not in ("auto", *LOSSES):
            p.append(f"loss must be one of auto, {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("proj_dim", "max_text_len"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.text_frozen_layers < 0 or self.num_samples < 0:
            p.append(f"text_frozen_layers and num_samples must be >= 0, got {self.text_frozen_layers}, {self.num_samples}")
        if self.loop.batch_size < 2:
            p.append(f"loop.batch_size must be >= 2 (the batch's other reports are the negatives), got {self.loop.batch_size}")
        rep = self.representation
        kind = REPRESENTATIONS.get(rep.type).kind if rep.type in REPRESENTATIONS else None
        if kind != "image":
            pictures = [n for n in REPRESENTATIONS.names() if REPRESENTATIONS.get(n).kind == "image"]
            p.append(f"representation must draw a picture for the vision encoder ({', '.join(pictures)}), got {rep.type!r}")
        p += [f"representation ({rep.type}): {m}" for m in rep.problems()]
        return p


def _check_text_sizes(text: torch.nn.Module, opts: ClipPretrainOptions) -> int:
    """The text model's width; a model without one, or shorter than ``max_text_len``, is refused before training."""
    cfg = getattr(text, "config", None)
    hidden = getattr(cfg, "hidden_size", None)
    if not isinstance(hidden, int):
        raise DataError(f"text model {opts.text_model!r} ({type(text).__name__}) has no config.hidden_size: a text encoder "
                        "such as BERT is expected")  # fmt: skip
    positions = getattr(cfg, "max_position_embeddings", None)
    if isinstance(positions, int) and opts.max_text_len > positions:
        raise ConfigError([f"max_text_len {opts.max_text_len} exceeds the text model's max_position_embeddings {positions} "
                           f"({opts.text_model}): set --max_text_len {positions} or less"])  # fmt: skip
    return hidden


def pretrain_clip(opts: ClipPretrainOptions) -> dict:
    """Pretrain and save; returns ``{"losses", "eval_loss_start", "eval_loss_end", "top1_start", "top1_end",
    "top1_chance", "out", "model"}`` (the loss and the image->report top-1 of a held batch, without augmentation, before
    and after; the top-1 of a random guess)."""
    from ecg_bench.data.store import SegmentStore

    check_options("clip", opts, required=("store", "out", "text_model"))
    loop, family, loss = opts.loop, opts.encoder, opts.loss_name()
    store = SegmentStore(opts.store)
    reports = [str(row.get("report") or "").strip() for row in store.index]
    pool = np.flatnonzero([bool(r) for r in reports])
    if len(pool) < 2:
        raise DataError(f"{store.path}: {len(pool)} segments have a report; image-report pretraining needs reports "
                        "(index.jsonl 'report')")  # fmt: skip
    if 0 < opts.num_samples < len(pool):
        pool = np.sort(np.random.default_rng(loop.seed).choice(pool, opts.num_samples, replace=False))
    rep = build_representation(opts.representation, fs=store.fs)
    shown, drawing = rep.for_evaluation(), drawing_options(to_dict(opts.representation))
    spec = EncoderSpec(in_leads=len(LEADS), seq_len=store.segment_len, out_dim=0, num_tokens=1, fs=float(store.fs),
                       input_kind="image", input_shape=rep.output(store.segment_len).shape, representation=drawing)  # fmt: skip
    torch.manual_seed(loop.seed)
    text, tokenizer = load_text_tower(opts.text_model)
    text_hidden = _check_text_sizes(text, opts)
    vision_name = opts.vision_model or DEFAULT_MODELS[family]
    vision = load_hf(family, vision_name, spec, tokens="pooled")
    model = ImageReport(vision, text, tokenizer, text_hidden, opts.proj_dim, loss, opts.text_frozen_layers, opts.max_text_len,
                        opts.text_pooling)  # fmt: skip
    contract = PreprocessingContract(float(store.fs), store.segment_len, tuple(LEADS), "none", drawing)
    held = np.sort(pool[:EVAL_BATCH])
    held_x, held_r = torch.stack([shown(s) for s in store.signals(held)]), [reports[i] for i in held]
    run: PretrainRun

    def held_eval() -> tuple[float, float]:
        """Loss and image->report top-1 of the held batch (eval mode, no augmentation; a report equal to the true one
        counts as a hit: many records share a report)."""
        model.eval()
        with torch.no_grad():
            logits = model.pair_logits(held_x.to(next(model.parameters()).device), held_r)
            value, best = float(model.contrastive_loss(logits)), logits.argmax(1).tolist()
        return value, float(np.mean([held_r[j] == held_r[i] for i, j in enumerate(best)]))

    def loss_of(idx: np.ndarray) -> dict[str, torch.Tensor]:
        rep.reseed(loop.seed * 1_000_003 + run.step)  # augmentations: a function of the step (exact resume)
        seg = np.sort(pool[idx])
        x = torch.stack([rep(s) for s in store.signals(seg)])
        return model.losses(x.to(run.device), [reports[i] for i in seg])

    def write(folder: Path, meta: dict) -> None:
        write_encoder(folder, family, vision.architecture(vision_name), vision.state_dict(), contract,
                      {**meta, "store": str(store.path), "objective": "clip", "loss": loss, "text_model": opts.text_model,
                       "vision_model": vision_name})  # fmt: skip

    start, top1_start = held_eval()
    run = PretrainRun(model, loss_of, len(pool), loop, opts.out, options_json(opts, loop) | {"loop": None}, write, "clip")
    run.meta.setdefault("eval_loss_start", start)
    run.meta.setdefault("eval_top1_start", top1_start)
    # a guess drawn at random hits a report equal to the true one this often (many records share a report)
    run.meta["eval_top1_chance"] = float(np.mean([sum(r == q for q in held_r) / len(held_r) for r in held_r]))
    losses = run.train()
    end, top1_end = held_eval()
    run.meta.update(eval_loss_end=end, eval_top1_end=top1_end)
    run.save()
    log.info("clip (%s, %s loss): held-batch loss %.4f -> %.4f, image->report top-1 %.3f -> %.3f (chance %.3f); saved %s",
             family, loss, run.meta["eval_loss_start"], end, run.meta["eval_top1_start"], top1_end,
             run.meta["eval_top1_chance"], opts.out)  # fmt: skip
    return {"losses": losses, "eval_loss_start": run.meta["eval_loss_start"], "eval_loss_end": end,
            "top1_start": run.meta["eval_top1_start"], "top1_end": top1_end, "top1_chance": run.meta["eval_top1_chance"],
            "out": opts.out, "model": model}  # fmt: skip


def run(opts: ClipPretrainOptions) -> str:
    r = pretrain_clip(opts)
    return (f"clip ({opts.encoder}, {opts.loss_name()} loss): held-batch loss {r['eval_loss_start']:.4f} -> "
            f"{r['eval_loss_end']:.4f}, image->report top-1 {r['top1_start']:.3f} -> {r['top1_end']:.3f} (chance "
            f"{r['top1_chance']:.3f}) after "
            f"{len(r['losses'])} steps -> {r['out']} (load with --model.encoder.type {opts.encoder} "
            f"--model.encoder.weights {r['out']})")  # fmt: skip


PRETRAINERS.register("clip", options=ClipPretrainOptions)(
    Pretrainer(
        ClipPretrainOptions,
        run,
        "image-report contrastive (CLIP / SigLIP loss) pretraining of a vision encoder "
        "(vit, clip, siglip, siglip2) on printed ECGs",
    )  # fmt: skip
)
