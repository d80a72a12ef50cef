"""ECG encoders: ``[N, leads, samples] -> [N, tokens, dim]``. Registered by name in ENCODERS."""

from ecg_bench.models.encoders import conv1d, mae, merl, patch, signal2vec, spectral  # noqa: F401  (registers encoders, pretrainers)
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec, build_encoder
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer

__all__ = ["ENCODERS", "PRETRAINERS", "EncoderSpec", "Pretrainer", "build_encoder"]
