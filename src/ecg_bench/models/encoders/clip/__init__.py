"""``ecg-bench pretrain clip``: image-report contrastive pretraining of the vision encoders on printed ECGs.

- ``model.py``: the two towers, projections, CLIP's InfoNCE and SigLIP's sigmoid loss, zero-shot by prompts;
- ``pretrain.py``: ``ecg-bench pretrain clip`` (PRETRAINERS); the tower it saves is loaded by the vision encoders'
  builders (``vision.py``, ``--model.encoder.weights``).
"""

from ecg_bench.models.encoders.clip.model import LOSSES, ImageReport, infonce_loss, sigmoid_loss
from ecg_bench.models.encoders.clip.pretrain import ClipPretrainOptions, pretrain_clip

__all__ = ["LOSSES", "ClipPretrainOptions", "ImageReport", "infonce_loss", "pretrain_clip", "sigmoid_loss"]
