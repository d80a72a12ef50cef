"""ST-MEM, MTAE and MLAE: one ViT over ECG patches, three ways of cutting the ECG into tokens.

Facts from the reference code (github bakqui/ST-MEM, ICLR 2024); the code is ours:

- ``st_mem``: every lead cut into patches of ``patch_size`` samples (``[B, 12, n, p]``); each lead's patches
  are framed by a SEP token on both sides, and a learned lead embedding is added to all tokens of a lead.
  The transformer sees ``12 * (n + 2)`` tokens.
- ``mtae``: time patches across all leads (``[B, n, p * 12]``) after a CLS token.
- ``mlae``: one patch per lead (``[B, 12, L]``) after a CLS token.

Patch embedding LayerNorm(P) -> Linear(P, width) -> LayerNorm(width); fixed 1-D sin-cos positions (zeros at the
SEP / CLS places, as the original); pre-norm transformer blocks (GELU MLP, ``heads * 64 = width`` for ``base``);
final LayerNorm. Input scaled per segment first (``scaling``: min-max to [0, 1] by default).

The ELM gets the ENCODER's latents of the whole, unmasked ECG: patch tokens (SEP / CLS dropped), averaged in
order into ``num_tokens`` groups (with ``st_mem`` and 12 tokens: one per lead). Gradients flow, so the encoder
can be trained through the ELM (``freeze`` False); the original ECG-Bench fed decoder latents of a randomly
masked ECG under no_grad instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions, path_field
from ecg_bench.errors import ConfigError, ShapeError
from ecg_bench.models.encoders.contract import SCALINGS, scale
from ecg_bench.models.encoders.weights import ENCODER_FOLDER, FromEncoderFolder

LAYOUTS = ("st_mem", "mtae", "mlae")
TARGET_PATCHES = 25
"""Patches per lead the automatic patch size aims at (20 / 50 / 100 samples for 500 / 1250 / 2500)."""


@dataclass(frozen=True)
class ViTSize:
    """Widths of one named size: encoder ViT and MAE decoder."""

    width: int
    depth: int
    heads: int
    mlp_dim: int
    decoder_width: int
    decoder_depth: int
    decoder_heads: int


SIZES: dict[str, ViTSize] = {
    "tiny": ViTSize(64, 2, 2, 256, 64, 1, 2),  # tests, CPU
    "small": ViTSize(128, 4, 4, 512, 128, 2, 4),  # CPU pretraining in minutes
    "vit_small": ViTSize(384, 12, 6, 1536, 256, 4, 4),  # ST-MEM's ViT-S
    "base": ViTSize(768, 12, 12, 3072, 256, 4, 4),  # ViT-B as ST-MEM: decoder 256 wide, 4 layers, 4 heads
}


@dataclass
class ViTEncoderOptions(EncoderOptions):
    """Options shared by the st_mem, mtae and mlae encoders (each registers its own subclass)."""

    size: str = "tiny"
    """Named size: tiny (64 wide, 2 layers), small (128, 4), vit_small (384, 12, ST-MEM's ViT-S), base (ViT-B: 768 wide, 12 layers, 12 heads, MLP 3072)."""
    patch_size: int = 0
    """Samples per patch (st_mem, mtae); 0 = the divisor of the segment length nearest to length / 25. mlae: one
    patch per lead, ignored."""
    scaling: str = "minmax"
    """Per-segment input scaling: minmax (to [0, 1], the original ECG-Bench), zscore (ST-MEM's released weights), none."""
    mask_ratio: float = 0.75
    """Fraction of patches masked in MAE pretraining (never at inference)."""
    norm_pix_loss: bool = False
    """MAE target: each patch z-scored (ST-MEM's pretraining configs) instead of the scaled signal."""
    freeze: bool = False
    """Keep the encoder frozen inside the ELM (only the projector and the LLM learn)."""
    num_tokens: int = 4
    """ECG tokens handed to the ELM: the patch-token latents averaged into this many groups (st_mem with 12: one per
    lead); at most the number of patch tokens."""
    weights: str = path_field(checkpoint=ENCODER_FOLDER)
    """Encoder checkpoint folder (``ecg-bench pretrain mae`` or a converted public checkpoint); empty = random init.
    Its architecture is used, and its preprocessing contract is checked against the run."""

    def problems(self) -> list[str]:
        p = []
        if self.size not in SIZES:
            p.append(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.patch_size < 0:
            p.append(f"patch_size must be >= 0 (0 = automatic), got {self.patch_size}")
        if self.scaling not in SCALINGS:
            p.append(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            p.append(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.num_tokens < 1:
            p.append(f"num_tokens must be >= 1, got {self.num_tokens}")
        return p


@dataclass
class StMemOptions(ViTEncoderOptions):
    """Options of the ``st_mem`` encoder (per-lead patches, SEP tokens, lead embeddings)."""


@dataclass
class MtaeOptions(ViTEncoderOptions):
    """Options of the ``mtae`` encoder (time patches across all leads, CLS token)."""


@dataclass
class MlaeOptions(ViTEncoderOptions):
    """Options of the ``mlae`` encoder (one patch per lead, CLS token)."""


OPTIONS = {"st_mem": StMemOptions, "mtae": MtaeOptions, "mlae": MlaeOptions}


def auto_patch_size(seq_len: int, target: int = TARGET_PATCHES) -> int:
    """The divisor of ``seq_len`` closest to ``seq_len / target`` (20 for 500, 50 for 1250, 100 for 2500)."""
    want = seq_len / target
    return min((d for d in range(1, seq_len + 1) if seq_len % d == 0), key=lambda d: (abs(d - want), d))


def sincos(dim: int, n: int, left: int, right: int) -> torch.Tensor:
    """``[left + n + right, dim]`` fixed 1-D sin-cos positions; the extra (SEP / CLS) places get zeros."""
    if dim % 2:
        raise ConfigError([f"sin-cos positions need an even width, got {dim}"])
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim / 2))
    grid = torch.arange(n, dtype=torch.float32)[:, None] * omega[None, :]
    pos = torch.cat([grid.sin(), grid.cos()], 1)
    return torch.cat([torch.zeros(left, dim), pos, torch.zeros(right, dim)])


def block(width: int, heads: int, mlp_dim: int) -> nn.TransformerEncoderLayer:
    """Pre-norm transformer block, GELU MLP, no dropout (ST-MEM's TransformerBlock)."""
    return nn.TransformerEncoderLayer(width, heads, mlp_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


class SignalViT(FromEncoderFolder, nn.Module):
    """The ViT encoder of ``layout`` (st_mem, mtae, mlae); see the module docstring."""

    def __init__(self, layout: str, opts: ViTEncoderOptions, in_leads: int, seq_len: int, num_tokens: int = 1):
        super().__init__()
        if layout not in LAYOUTS:
            raise ConfigError([f"ViT layout must be one of {', '.join(LAYOUTS)}, got {layout!r}"])
        if opts.problems():
            raise ConfigError([f"{layout} encoder: {m}" for m in opts.problems()])
        self.layout, self.opts, self.in_leads, self.seq_len = layout, opts, in_leads, seq_len
        size = SIZES[opts.size]
        self.width = self.out_dim = size.width
        p = seq_len if layout == "mlae" else (opts.patch_size or auto_patch_size(seq_len))
        if seq_len % p:
            raise ShapeError(f"{layout} encoder segment", (in_leads, seq_len), f"samples divisible by patch_size={p}")
        self.patch = p
        if layout == "st_mem":
            self.groups, self.n, self.patch_dim, self.left, self.right = in_leads, seq_len // p, p, 1, 1
        elif layout == "mtae":
            self.groups, self.n, self.patch_dim, self.left, self.right = 1, seq_len // p, p * in_leads, 1, 0
        else:
            self.groups, self.n, self.patch_dim, self.left, self.right = 1, in_leads, seq_len, 1, 0
        self.num_tokens = max(1, min(num_tokens, self.groups * self.n))
        w = size.width
        self.patch_embed = nn.Sequential(nn.LayerNorm(self.patch_dim), nn.Linear(self.patch_dim, w), nn.LayerNorm(w))
        self.register_buffer("pos", sincos(w, self.n, self.left, self.right), persistent=False)
        if layout == "st_mem":
            self.sep = nn.Parameter(torch.zeros(w))
            self.lead_embed = nn.Parameter(torch.zeros(in_leads, w))
        else:
            self.cls = nn.Parameter(torch.zeros(w))
        self.blocks = nn.ModuleList(block(w, size.heads, size.mlp_dim) for _ in range(size.depth))
        self.norm = nn.LayerNorm(w)
        init_weights(self)
        for name, prm in self.named_parameters(recurse=False):
            nn.init.normal_(prm, std=0.02)  # sep, lead_embed, cls (timm's trunc_normal_(std=.02))

    def architecture(self) -> dict:
        """What rebuilds this module: layout, options, dimensions (saved in encoder.json)."""
        return {"layout": self.layout, "options": asdict(self.opts), "in_leads": self.in_leads, "seq_len": self.seq_len,
                "patch_size": self.patch}  # fmt: skip

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, leads, L] -> [B, groups, n, patch_dim]``."""
        b, c, t = x.shape
        if self.layout == "st_mem":
            return x.reshape(b, c, self.n, self.patch)
        if self.layout == "mtae":  # 'b c (n p) -> b n (p c)'
            return x.reshape(b, c, self.n, self.patch).permute(0, 2, 3, 1).reshape(b, 1, self.n, self.patch * c)
        return x.reshape(b, 1, c, t)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings plus positions, ``[B, G, n, width]``."""
        return self.patch_embed(patches) + self.pos[self.left : self.left + self.n]

    def frame(self, h: torch.Tensor) -> torch.Tensor:
        """Add SEP + lead embeddings (st_mem) or the CLS token to ``[B, G, k, width]``; return ``[B, G * (k + extras), width]``."""
        b, g, _, w = h.shape
        if self.layout == "st_mem":
            left = (self.sep + self.pos[0]).expand(b, g, 1, w)
            right = (self.sep + self.pos[-1]).expand(b, g, 1, w)
            h = torch.cat([left, h, right], 2) + self.lead_embed[None, :, None, :]
        else:
            h = torch.cat([(self.cls + self.pos[0]).expand(b, g, 1, w), h], 2)
        return h.reshape(b, -1, w)

    def transform(self, tokens: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[1:] != (self.in_leads, self.seq_len):
            raise ShapeError(f"{self.layout} encoder input", x.shape, f"[N, {self.in_leads}, {self.seq_len}]")

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Patch-token latents of the whole (unmasked) ECG, SEP / CLS dropped: ``[B, G * n, width]``."""
        self.check(x)
        h = self.transform(self.frame(self.embed(self.patchify(scale(x.float(), self.opts.scaling)).to(self.norm.weight.dtype))))
        h = h.reshape(x.shape[0], self.groups, self.left + self.n + self.right, self.width)
        return h[:, :, self.left : self.left + self.n].reshape(x.shape[0], self.groups * self.n, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, leads, L] -> [N, num_tokens, width]``: latents averaged in order into ``num_tokens`` groups."""
        h = self.latents(x)
        return F.adaptive_avg_pool1d(h.transpose(1, 2), self.num_tokens).transpose(1, 2)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linear weights, zero biases, unit LayerNorms (MAE / ST-MEM initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.MultiheadAttention):
            nn.init.xavier_uniform_(m.in_proj_weight)
            nn.init.zeros_(m.in_proj_bias)


class MAEDecoder(nn.Module):
    """MAE decoder: latents -> mask tokens unshuffled in place -> transformer (per group, shared) -> patches."""

    def __init__(self, enc: SignalViT):
        super().__init__()
        size = SIZES[enc.opts.size]
        d = size.decoder_width
        self.enc = [enc]  # not a submodule: the decoder's state holds only its own weights
        self.to_decoder = nn.Linear(enc.width, d)
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.register_buffer("pos", sincos(d, enc.n, enc.left, enc.right), persistent=False)
        self.blocks = nn.ModuleList(block(d, size.decoder_heads, 4 * d) for _ in range(size.decoder_depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, enc.patch_dim)
        init_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """``tokens [B, G * (k + extras), width]``, ``ids_restore [B, G, n]`` -> predicted patches ``[B, G, n, patch_dim]``."""
        enc = self.enc[0]
        b, g, n = ids_restore.shape
        y = self.to_decoder(tokens).reshape(b, g, -1, self.pos.shape[-1])
        k = y.shape[2] - enc.left - enc.right
        d = y.shape[-1]
        body = torch.cat([y[:, :, enc.left : enc.left + k], self.mask_token.expand(b, g, n - k, d)], 2)
        body = torch.gather(body, 2, ids_restore[..., None].expand(-1, -1, -1, d)) + self.pos[enc.left : enc.left + n]
        left = y[:, :, : enc.left] + self.pos[: enc.left]
        right = y[:, :, enc.left + k :] + self.pos[enc.left + n :]
        h = torch.cat([left, body, right], 2).reshape(b * g, -1, d)
        for blk in self.blocks:
            h = blk(h)
        out = self.head(self.norm(h))[:, enc.left : enc.left + n]
        return out.reshape(b, g, n, -1)


class MaskedAutoencoder(nn.Module):
    """Encoder + MAE decoder: mask ``mask_ratio`` of each group's patches, reconstruct them, MSE on the masked ones."""

    def __init__(self, encoder: SignalViT):
        super().__init__()
        self.encoder = encoder
        self.decoder = MAEDecoder(encoder)

    def random_masking(self, h: torch.Tensor, generator: torch.Generator | None = None):
        """Keep a random ``1 - mask_ratio`` of the patches of each group: ``(kept, mask [B, G, n], ids_restore)``."""
        b, g, n, w = h.shape
        keep = max(1, int(n * (1 - self.encoder.opts.mask_ratio)))
        noise = torch.rand(b, g, n, generator=generator).to(h.device)
        ids_shuffle = noise.argsort(2)
        ids_restore = ids_shuffle.argsort(2)
        kept = torch.gather(h, 2, ids_shuffle[..., :keep, None].expand(-1, -1, -1, w))
        mask = torch.ones(b, g, n, device=h.device)
        mask[..., :keep] = 0
        return kept, torch.gather(mask, 2, ids_restore), ids_restore

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        enc = self.encoder
        enc.check(x)
        target = enc.patchify(scale(x.float(), enc.opts.scaling))
        kept, mask, ids_restore = self.random_masking(enc.embed(target), generator)
        pred = self.decoder(enc.transform(enc.frame(kept)), ids_restore)
        if enc.opts.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        loss = ((pred - target) ** 2).mean(-1)
        return {"loss": (loss * mask).sum() / mask.sum(), "pred": pred, "mask": mask}


__all__ = ["LAYOUTS", "OPTIONS", "SIZES", "MaskedAutoencoder", "MlaeOptions", "MtaeOptions", "SignalViT", "StMemOptions",
           "ViTEncoderOptions", "auto_patch_size", "scale", "sincos"]  # fmt: skip
