"""Image-report contrastive model: a vision tower reading ECG printouts, a text tower reading their reports.

After CLIP (Radford et al. 2021, ``modeling_clip.py`` in transformers) and SigLIP (Zhai et al. 2023):

- image side: the vision tower's pooled output (``VisionEncoder.embed``: CLIP's normalized CLS token, SigLIP's
  attention-pooling head, ViT's CLS token) -> ``Linear(hidden, proj_dim, bias=False)`` (CLIP's visual_projection);
- text side: any Hugging Face text encoder (by default its last layer's first token, the CLS embedding MedCPT
  documents; or its pooler output, as MERL, or the masked mean of its tokens) ->
  ``Linear(hidden, proj_dim, bias=False)`` (CLIP's text_projection); its first ``text_frozen_layers`` layers frozen;
- both L2-normalized; logits = ``exp(t) * cosine`` with a learned temperature ``t``;
- ``clip`` loss: symmetric InfoNCE, the mean of image->report and report->image cross-entropy; ``t`` starts at
  log(1 / 0.07) and ``exp(t)`` is clamped at 100, as CLIP;
- ``sigmoid`` loss (SigLIP): every (image, report) pair is a binary decision, ``-sum log sigmoid(z_ij * (exp(t) *
  cos_ij + b)) / B`` with ``z = +1`` on the diagonal and -1 elsewhere; ``t`` starts at log 10 and the learned bias
  ``b`` at -10, as SigLIP. No softmax over the batch, so no all-gather of the batch is needed across devices.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.models.encoders.merl.model import freeze_text_layers, text_features
from ecg_bench.models.encoders.vision import VisionEncoder

LOSSES = ("clip", "sigmoid")
MAX_LOGIT_SCALE = 100.0


def infonce_loss(logits: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE of ``[B, B]`` image-report logits (pairs on the diagonal): the mean of both directions."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def sigmoid_loss(logits: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss of ``[B, B]`` logits (pairs on the diagonal), summed over pairs, / B."""
    z = 2 * torch.eye(logits.shape[0], device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(z * logits).sum() / logits.shape[0]


class ImageReport(nn.Module):
    """Vision tower + text tower + projections; ``losses(images, reports)`` gives the contrastive loss."""

    def __init__(self, vision: VisionEncoder, text_model: nn.Module, tokenizer, text_hidden: int, proj_dim: int = 256,
                 loss: str = "clip", text_frozen_layers: int = 6, max_text_len: int = 128,
                 text_pooling: str = "cls"):  # fmt: skip
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.vision, self.text, self.tokenizer, self.loss_name = vision, text_model, tokenizer, loss
        self.max_text_len, self.text_pooling = max_text_len, text_pooling
        self.image_proj = nn.Linear(vision.out_dim, proj_dim, bias=False)
        self.text_proj = nn.Linear(text_hidden, proj_dim, bias=False)
        sigmoid = loss == "sigmoid"
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0) if sigmoid else math.log(1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if sigmoid else None
        freeze_text_layers(text_model, text_frozen_layers)

    def image_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` 0-255 pictures -> unit vectors ``[B, proj_dim]`` in the shared space."""
        return F.normalize(self.image_proj(self.vision.embed(x)), dim=-1)

    def text_embedding(self, texts: list[str]) -> torch.Tensor:
        """Reports -> unit vectors ``[B, proj_dim]`` in the shared space."""
        feats = text_features(
            self.text, self.tokenizer, texts, self.max_text_len, self.text_proj.weight.device, self.text_pooling
        )
        return F.normalize(self.text_proj(feats), dim=-1)

    def logits(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """``[B_img, B_txt]``: ``exp(t) * cosine`` (+ ``b`` for the sigmoid loss)."""
        out = self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * img @ txt.T
        return out + self.logit_bias if self.logit_bias is not None else out

    def pair_logits(self, x: torch.Tensor, reports: list[str]) -> torch.Tensor:
        """``[B, B]`` fp32 logits of pictures ``x`` against ``reports`` (the pairs on the diagonal)."""
        return self.logits(self.image_embedding(x), self.text_embedding(reports)).float()

    def contrastive_loss(self, logits: torch.Tensor) -> torch.Tensor:
        return infonce_loss(logits) if self.loss_name == "clip" else sigmoid_loss(logits)

    def losses(self, x: torch.Tensor, reports: list[str]) -> dict[str, torch.Tensor]:
        """``{"loss", "scale"}`` for pictures ``x`` paired row by row with ``reports`` (scale: ``exp(t)``)."""
        return {"loss": self.contrastive_loss(self.pair_logits(x, reports)), "scale": self.logit_scale.detach().exp()}

    @torch.no_grad()
    def zero_shot(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """``[B, K]`` cosine similarity of each picture with each class prompt (argmax = predicted class)."""
        self.eval()
        return self.image_embedding(x) @ self.text_embedding(prompts).T
