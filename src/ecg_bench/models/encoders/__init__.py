"""ECG encoders: ``[N, leads, samples] -> [N, tokens, dim]``. Registered by name in ENCODERS."""

from ecg_bench.models.encoders import conv1d, patch, signal2vec, spectral  # noqa: F401  (registers the encoders)
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec, build_encoder

__all__ = ["ENCODERS", "EncoderSpec", "build_encoder"]
