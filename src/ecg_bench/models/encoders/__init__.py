"""ECG encoders: ``[N, *representation shape] -> [N, tokens, dim]``. Registered by name in ENCODERS."""

from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec, build_encoder, input_kind_problem, input_kinds
from ecg_bench.models.encoders.pretraining import PRETRAINERS, Pretrainer

__all__ = ["ENCODERS", "PRETRAINERS", "EncoderSpec", "Pretrainer", "build_encoder", "input_kind_problem", "input_kinds"]
