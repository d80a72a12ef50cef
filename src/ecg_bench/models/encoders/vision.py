"""Hugging Face vision encoders for the ``image`` and ``stacked`` representations: ViT, CLIP, SigLIP, SigLIP2.

``vit``, ``clip``, ``siglip`` and ``siglip2`` load a model by hub id or local folder
(``VisionEncoderOptions.model``; the defaults are the checkpoints the original ECG-Bench used, and SigLIP2's
base model) with transformers (``ViTModel``, ``CLIPVisionModel``: the vision tower of a CLIP checkpoint,
``SiglipVisionModel``, ``Siglip2VisionModel``), and read the normalization of the model's OWN image
processor (``preprocessor_config.json``: rescale factor, mean, std).

Input: ``[N, 3, H, W]`` pixel values 0-255 (kind ``image``). The forward pass does what the image processor
does, on tensors and batched (the processors work image by image on the CPU, in numpy / PIL, and their fast
variants need torchvision; here it runs on the model's device, and a test checks it equals the processor): resize to the model's size (bicubic, antialiased; a plain resize of the whole
picture: the processors' shortest-edge resize + centre crop would keep only the middle of a [3, 12, L]
stacked image), rescale, normalize, and for SigLIP2 cut the picture into its patch sequence with the
attention mask and spatial shape it expects.

Output tokens (``tokens``):

- ``patches`` (default): the last layer's patch tokens (CLS dropped), averaged along the sequence down to
  ``num_tokens`` tokens (``--model.encoder.num_tokens``) (the patch rows in order, so each token covers a band of the picture);
- ``pooled``: one token, the model's pooled output (ViT: every layer's hidden states averaged over layers
  and tokens, as the original ECG-Bench did);
- ``all``: every last-layer token (LLaVA style; 197 for ViT-B/16 at 224 px).

Pretrained on ECG printouts (``ecg-bench pretrain clip``, ``models/encoders/clip/``): ``weights`` names the encoder
folder it wrote (``encoder.json``: the model's config and normalization, no hub access needed; the preprocessing
contract with the representation's drawing options, checked against the run's; ``encoder.safetensors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import EncoderOptions, path_field
from ecg_bench.errors import ConfigError, DataError, ShapeError
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec
from ecg_bench.models.encoders.contract import PreprocessingContract
from ecg_bench.models.encoders.weights import ENCODER_FOLDER, FromEncoderFolder, contract_of, load_state, read_encoder
from ecg_bench.signals.leads import LEADS

log = get_logger(__name__)

TOKEN_MODES = ("patches", "pooled", "all")

DEFAULT_MODELS = {
    "vit": "google/vit-base-patch16-224-in21k",
    "clip": "openai/clip-vit-base-patch32",
    "siglip": "google/siglip-base-patch16-224",
    "siglip2": "google/siglip2-base-patch16-224",
}
"""The original ECG-Bench's vision checkpoints (SigLIP2: its base model at 224 px)."""


@dataclass
class VisionEncoderOptions(EncoderOptions):
    """A Hugging Face vision model reading the image or stacked representation (base of vit, clip, siglip, siglip2)."""

    model: str = path_field(name_ok=True)
    """Hub id or local folder of the model and its image processor (empty = the family's default, e.g.
    openai/clip-vit-base-patch32 for clip; see DEFAULT_MODELS)."""
    tokens: str = "patches"
    """patches (last-layer patch tokens averaged down to num_tokens), pooled (one token) or all."""
    num_tokens: int = 4
    """Output tokens per ECG with tokens=patches (at most the model's patch count)."""
    weights: str = path_field(checkpoint=ENCODER_FOLDER)
    """Encoder folder written by `ecg-bench pretrain clip` (encoder.json + encoder.safetensors), instead of model:
    architecture, normalization and weights come from it; its preprocessing contract (fs, segment length, the
    representation and its drawing options) must match the run's."""

    def problems(self) -> list[str]:
        p = []
        if self.model and self.weights:
            p.append(f"set model (a Hugging Face model) or weights (a pretrained encoder folder), not both: got model "
                     f"{self.model!r} and weights {self.weights!r}")  # fmt: skip
        if self.tokens not in TOKEN_MODES:
            p.append(f"tokens must be one of {', '.join(TOKEN_MODES)}, got {self.tokens!r}")
        if not isinstance(self.model, str):
            p.append(f"model must be a hub id or folder, got {self.model!r}")
        if not (isinstance(self.num_tokens, int) and self.num_tokens >= 1):
            p.append(f"num_tokens must be >= 1, got {self.num_tokens!r}")
        return p

    def check(self) -> None:
        """Raise ConfigError listing the problems (for options built in Python, not through the config)."""
        p = self.problems()
        if p:
            raise ConfigError([f"vision encoder: {m}" for m in p])


@dataclass
class ViTOptions(VisionEncoderOptions):
    """ViT (transformers ViTModel; default google/vit-base-patch16-224-in21k) on the image or stacked representation."""


@dataclass
class ClipOptions(VisionEncoderOptions):
    """CLIP's vision tower (CLIPVisionModel; default openai/clip-vit-base-patch32) on the image or stacked representation."""


@dataclass
class SiglipOptions(VisionEncoderOptions):
    """SigLIP's vision tower (SiglipVisionModel; default google/siglip-base-patch16-224) on the image or stacked representation."""


@dataclass
class Siglip2Options(VisionEncoderOptions):
    """SigLIP2's vision tower (Siglip2VisionModel; default google/siglip2-base-patch16-224) on the image or stacked representation."""


OPTIONS = {"vit": ViTOptions, "clip": ClipOptions, "siglip": SiglipOptions, "siglip2": Siglip2Options}
"""One options class per family (a choice registers one class under one name); the fields are VisionEncoderOptions'."""


@dataclass(frozen=True)
class Normalization:
    """What the model's image processor does to 0-255 pixels: ``(x * rescale - mean) / std``."""

    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, proc) -> "Normalization":
        rescale = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
        if getattr(proc, "do_normalize", True):
            mean, std = tuple(float(v) for v in proc.image_mean), tuple(float(v) for v in proc.image_std)
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return cls(rescale, mean, std)


MODEL_CLASSES = {"vit": "ViTModel", "clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}
"""The transformers class of each family's vision tower."""


def _model_class(family: str):
    import transformers

    return getattr(transformers, MODEL_CLASSES[family]), ({"add_pooling_layer": False} if family == "vit" else {})


def _load(family: str, name: str):
    """(vision model, image processor) of ``family`` from hub id or folder ``name``."""
    from transformers import AutoImageProcessor

    from ecg_bench.safe_files import safetensors_only

    cls, kwargs = _model_class(family)
    try:
        proc = AutoImageProcessor.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise DataError(f"{family} encoder: cannot load the image processor of {name!r} (preprocessor_config.json: its "
                        f"normalization is needed): {e}") from None  # fmt: skip
    try:
        model = cls.from_pretrained(name, **kwargs, **safetensors_only(name, f"{family} encoder"))
    except (OSError, ValueError) as e:
        raise DataError(f"{family} encoder: cannot load {MODEL_CLASSES[family]} from {name!r}: {e}") from None
    return model, proc


class VisionEncoder(FromEncoderFolder, nn.Module):
    """A Hugging Face vision model reading ``[N, 3, H, W]`` 0-255 pictures -> ``[N, num_tokens, hidden]``."""

    def __init__(self, family: str, model: nn.Module, norm: Normalization, spec: EncoderSpec, tokens: str = "patches"):
        super().__init__()
        self.family, self.model, self.tokens = family, model, tokens
        self.in_shape = tuple(spec.shape)
        if len(self.in_shape) != 3 or self.in_shape[0] != 3:
            raise ShapeError(f"{family} encoder input", self.in_shape, "[3, H, W] (an image or stacked representation)")
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1), persistent=False)
        self.rescale, self.norm = norm.rescale, norm
        cfg = model.config
        self.patch = int(cfg.patch_size)
        if family == "siglip2":
            side = int(math.isqrt(int(cfg.num_patches)))
            self.size = side * self.patch
        else:
            self.size = int(cfg.image_size)
        self.grid = self.size // self.patch
        self.out_dim = int(cfg.hidden_size)
        has_cls = family in ("vit", "clip")
        n_patches = self.grid * self.grid
        self.num_tokens = {"pooled": 1, "all": n_patches + has_cls, "patches": min(spec.num_tokens, n_patches)}[tokens]
        self.skip = int(has_cls)

    def pixel_values(self, x: torch.Tensor) -> torch.Tensor:
        """0-255 pictures ``[N, 3, H, W]`` -> the model's normalized ``[N, 3, size, size]`` input."""
        if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(f"{self.family} encoder input", x.shape, f"[N, {', '.join(map(str, self.in_shape))}]")
        x = x.float()
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
            x = x.clamp(0.0, 255.0)
        return (x * self.rescale - self.mean) / self.std

    def patch_sequence(self, pix: torch.Tensor) -> torch.Tensor:
        """SigLIP2's input: ``[N, 3, S, S]`` -> ``[N, grid*grid, patch*patch*3]`` (rows of patches, channels last)."""
        n, c, p, g = pix.shape[0], pix.shape[1], self.patch, self.grid
        return pix.reshape(n, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c)

    def run_model(self, x: torch.Tensor, hidden_states: bool = False):
        """The Hugging Face model's output for 0-255 pictures ``x``."""
        dtype = next(self.model.parameters()).dtype
        pix = self.pixel_values(x).to(dtype)
        kwargs = {"output_hidden_states": hidden_states}
        if self.family == "siglip2":
            n = pix.shape[0]
            return self.model(pixel_values=self.patch_sequence(pix),
                              pixel_attention_mask=torch.ones(n, self.grid * self.grid, dtype=torch.long, device=pix.device),
                              spatial_shapes=torch.tensor([[self.grid, self.grid]] * n, device=pix.device), **kwargs)  # fmt: skip
        return self.model(pixel_values=pix, **kwargs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One vector per picture, ``[N, out_dim]``: the model's own pooled output (CLIP: the normalized CLS token;
        SigLIP / SigLIP2: the attention-pooling head), ViT's last-layer CLS token (the model has no pooler here).
        What image-report pretraining (``ecg-bench pretrain clip``) projects into the shared space."""
        out = self.run_model(x)
        return out.last_hidden_state[:, 0] if self.family == "vit" else out.pooler_output

    def architecture(self, source: str = "") -> dict:
        """What rebuilds this tower without the hub (``encoder.json``): family, model config, normalization."""
        n = self.norm
        return {"family": self.family, "config": self.model.config.to_dict(), "source": source,
                "normalization": {"rescale": n.rescale, "mean": list(n.mean), "std": list(n.std)}}  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.run_model(x, hidden_states=self.family == "vit" and self.tokens == "pooled")
        if self.tokens == "all":
            return out.last_hidden_state
        if self.tokens == "pooled":
            if self.family == "vit":
                return torch.stack(out.hidden_states).mean(0).mean(1, keepdim=True)
            return out.pooler_output.unsqueeze(1)
        patches = out.last_hidden_state[:, self.skip :]
        return F.adaptive_avg_pool1d(patches.transpose(1, 2), self.num_tokens).transpose(1, 2)


def load_hf(family: str, name: str, spec: EncoderSpec, tokens: str = "patches") -> VisionEncoder:
    """The ``family`` tower of Hugging Face model ``name`` (hub id or folder), normalized as its image processor."""
    model, proc = _load(family, name)
    return VisionEncoder(family, model, Normalization.from_processor(proc), spec, tokens)


def drawing_options(representation: dict) -> dict:
    """A representation's options (JSON, with ``type``) without the training-only ones (augmentations and their seed):
    what a vision encoder's weights were trained to read."""
    return {k: v for k, v in representation.items() if k not in ("augment", "seed")}


def run_contract(spec: EncoderSpec) -> PreprocessingContract:
    """What a run feeds a vision encoder: ``spec``'s segments drawn by its representation (None when not known)."""
    rep = drawing_options(spec.representation) if spec.representation else None
    return PreprocessingContract(float(spec.fs), int(spec.seq_len), tuple(LEADS[: spec.in_leads]), "none", rep)


def load_pretrained(family: str, folder: str, spec: EncoderSpec, tokens: str = "patches") -> VisionEncoder:
    """The ``family`` tower of encoder folder ``folder`` (``ecg-bench pretrain clip``), its contract checked for ``spec``."""
    doc, tensors = read_encoder(folder, family)
    contract_of(doc, folder).check(run_contract(spec), folder)
    arch = doc.get("architecture") or {}
    try:
        cls, kwargs = _model_class(family)
        model = cls(cls.config_class.from_dict(arch["config"]), **kwargs)
        n = arch["normalization"]
        norm = Normalization(float(n["rescale"]), tuple(float(v) for v in n["mean"]), tuple(float(v) for v in n["std"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{folder}/encoder.json: architecture needs the model's config and normalization "
                        f"(rescale, mean, std): {type(e).__name__}: {e}") from None  # fmt: skip
    enc = VisionEncoder(family, model, norm, spec, tokens)
    load_state(enc, tensors, folder)
    return enc


def _builder(family: str):
    def build(o: VisionEncoderOptions, spec: EncoderSpec) -> nn.Module:
        o.check()
        if o.weights:
            enc, name = load_pretrained(family, o.weights, spec, o.tokens), o.weights
            enc.weights_folder = o.weights
        else:
            name = o.model or DEFAULT_MODELS[family]
            enc = load_hf(family, name, spec, o.tokens)
        log.info("%s encoder %s: %d px input, %d tokens of width %d", family, name, enc.size, enc.num_tokens, enc.out_dim)
        return enc

    build.input_kinds = ("image",)
    build.__name__ = family
    build.__doc__ = f"{family} vision encoder (Hugging Face; options VisionEncoderOptions)."
    return build


for _family in DEFAULT_MODELS:
    ENCODERS.register(_family, options=OPTIONS[_family])(_builder(_family))
