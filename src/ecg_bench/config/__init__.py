"""Typed run configuration: one nested dataclass made of sub-configs, saved with every run as JSON.

Parsing, type conversion and YAML/JSON reading are draccus's (the library lerobot's configs use): it decodes
nested dataclasses and *choice-typed* sub-configs (a component and its options)::

    model:
      encoder: {type: st_mem, patch_size: 50}      # --model.encoder.type st_mem --model.encoder.patch_size 50

- ``options``: the ``Options`` mixin and one choice base per kind of component (``EncoderOptions``, ...);
- ``fields``: field docstrings, walking fields, path-valued options (``path_field``);
- ``coerce``: the strict value checks (draccus lets None, NaN and True through where an int/float/str is declared);
- ``decode``: reading files, layering (preset < ``--config`` file < flags) and decoding (``build``);
- ``schema``: ``DataConfig``, ``ModelConfig``, ``TrainConfig``, ``EvalConfig``, ``RunConfig``.

This package imports no component package and no torch: a choice base makes its kind's registry find the
components on its first lookup.
"""

from ecg_bench.config.coerce import MIN_SEGMENT_SAMPLES, check_types, coerce, segment_problems, tree_problems
from ecg_bench.config.decode import build, deflatten, from_dict, layered, merge, read_config_file
from ecg_bench.config.fields import (
    _hints,
    _is_config,
    _list_of_config,
    field_docs,
    flat_dict,
    is_path,
    iter_leaf_fields,
    iter_options,
    PathOption,
    path_field,
    path_options,
)
from ecg_bench.config.options import (
    KINDS,
    ConditionOptions,
    ELMOptions,
    EncoderOptions,
    MappedOptions,
    MetricOptions,
    Options,
    PretrainerOptions,
    ProjectorOptions,
    RepresentationOptions,
    SourceOptions,
    choice,
    describe_options,
    is_choice,
    to_dict,
)
from ecg_bench.config.schema import (
    DATA_SPLITS,
    REPORT_TO,
    TRAIN_ECG,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    condition_label,
)

__all__ = [
    "DATA_SPLITS", "KINDS", "MIN_SEGMENT_SAMPLES", "REPORT_TO", "TRAIN_ECG", "ConditionOptions", "DataConfig",
    "ELMOptions", "EncoderOptions", "EvalConfig", "MappedOptions", "MetricOptions", "ModelConfig", "Options",
    "PretrainerOptions", "ProjectorOptions", "RepresentationOptions", "RunConfig", "SourceOptions", "TrainConfig",
    "_hints", "_is_config", "_list_of_config", "build", "check_types", "choice", "coerce",
    "condition_label", "deflatten", "describe_options", "field_docs", "flat_dict", "from_dict", "is_choice", "is_path",
    "iter_leaf_fields", "iter_options", "layered", "merge", "PathOption", "path_field", "path_options", "read_config_file",
    "segment_problems", "to_dict", "tree_problems",
]  # fmt: skip
