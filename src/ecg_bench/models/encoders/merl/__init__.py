"""MERL: the 1-D ResNet ECG tower, its ECG-report contrastive pretraining and zero-shot classification.

- ``resnet.py``: options and the ResNet (the ``merl`` encoder's module);
- ``model.py``: text tower, CMA + UMA losses, zero-shot by label prompts;
- ``pretrain.py``: ``ecg-bench pretrain merl`` (PRETRAINERS) and the ``merl`` builder (ENCODERS);
- ``public.py``: MERL's released ResNet checkpoint -> an encoder folder.
"""

from ecg_bench.models.encoders.merl.model import Merl, clip_loss, load_text_tower
from ecg_bench.models.encoders.merl.pretrain import MerlPretrainOptions, build_merl, pretrain_merl
from ecg_bench.models.encoders.merl.resnet import RESNET_SIZES, MerlOptions, ResNet1d
from ecg_bench.models.encoders.merl import public  # noqa: F401  (registers the merl import format)

__all__ = ["RESNET_SIZES", "Merl", "MerlOptions", "MerlPretrainOptions", "ResNet1d", "build_merl", "clip_loss",
           "load_text_tower", "pretrain_merl"]  # fmt: skip
