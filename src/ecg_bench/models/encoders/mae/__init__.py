"""ST-MEM, MTAE and MLAE: ViT encoders over ECG patches with masked-autoencoder pretraining, in one package.

- ``vit.py``: options, the encoder (``SignalViT``), the MAE decoder and objective;
- ``encoder.py``: the ``st_mem`` / ``mtae`` / ``mlae`` builders (ENCODERS), pretrained weights + contract check;
- ``pretrain.py``: ``ecg-bench pretrain mae`` (PRETRAINERS).
"""

from ecg_bench.models.encoders.mae import encoder, pretrain, public  # noqa: F401  (registers encoders, pretrainer, import format)
from ecg_bench.models.encoders.mae.encoder import build_vit
from ecg_bench.models.encoders.mae.pretrain import MAEPretrainOptions, pretrain_mae
from ecg_bench.models.encoders.mae.vit import (
    SIZES,
    MaskedAutoencoder,
    MlaeOptions,
    MtaeOptions,
    SignalViT,
    StMemOptions,
    ViTEncoderOptions,
    auto_patch_size,
)

__all__ = ["SIZES", "MAEPretrainOptions", "MaskedAutoencoder", "MlaeOptions", "MtaeOptions", "SignalViT", "StMemOptions",
           "ViTEncoderOptions", "auto_patch_size", "build_vit", "pretrain_mae"]  # fmt: skip
