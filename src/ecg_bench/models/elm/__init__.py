"""ECG-language models: one base class, one builder, one processor per family.

- ``processors.py``: ``Processor`` (messages + ECGs -> ``Batch``) and ``PlaceholderProcessor``; imports no
  other module of this package.
- ``base.py``: ``ELM`` (loss, greedy generation), ``build_elm`` (LLM loading, chat template, placeholder,
  LoRA / full fine-tuning), the ``ELMS`` family registry.
- ``encoder_elm.py``: ``llava`` and ``encoder_free`` (encoder + projector -> placeholder embeddings).
- ``token_elm.py``: ``ecg_byte`` (ECG-Byte tokens in the LLM's vocabulary) and its ``TokenProcessor``.

Imports run one way, processors <- base <- encoder_elm, token_elm <- this file: no cycles. Nothing outside
this package asks which family a model is: callers use the ELM and its processor.
"""

from ecg_bench.models.elm.base import ELM, ELMS, ElmFamily, InputDims, build_elm, input_problem
from ecg_bench.models.elm.encoder_elm import EncoderELM
from ecg_bench.models.elm.processors import (
    IGNORE_INDEX,
    Batch,
    GenerationTurn,
    PlaceholderProcessor,
    Processor,
    TrainExample,
    pad_batch,
)
from ecg_bench.models.elm.token_elm import TokenELM, TokenProcessor

__all__ = [
    "ELM", "ELMS", "IGNORE_INDEX", "Batch", "ElmFamily", "EncoderELM", "GenerationTurn", "InputDims",
    "PlaceholderProcessor", "Processor", "TokenELM", "TokenProcessor", "TrainExample", "build_elm", "input_problem",
    "pad_batch",
]  # fmt: skip
