"""Typed run configuration: one nested dataclass made of sub-configs, saved with every run as JSON.

Parsing, type conversion and YAML/JSON reading are draccus's (the library lerobot's configs use): it
decodes nested dataclasses and *choice-typed* sub-configs. Every registered component (source,
conversation dataset, representation, encoder, projector, ELM family, condition, metric, pretrainer)
declares its options as a dataclass subclassing its kind's choice base below, registered with it
(``ENCODERS.register("st_mem", options=StMemOptions)``); the run config holds the choice and its options::

    model:
      encoder: {type: st_mem, patch_size: 50}      # --model.encoder.type st_mem --model.encoder.patch_size 50

Each field carries a docstring (the string literal right below it): the ``--help`` text and
``ecg-bench list --details KIND``. ``build`` layers a command's preset < a ``--config`` file < flags
(a higher layer that changes a choice's ``type`` replaces that choice's options), migrates keys of
older configs (``MOVED``), refuses unknown keys listing the valid ones, decodes with draccus, then
checks strictly (``check_types``: draccus lets None, NaN and True through where an int/float/str is
declared) and runs every section's and option's ``problems()``: one ConfigError lists every problem.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import importlib
import inspect
import json
import logging
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import draccus
from draccus import ChoiceRegistry

from ecg_bench.errors import ConfigError, DataError
from ecg_bench.limits import load_config_file

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- component kinds (choice bases)

COMPONENT_MODULES = (
    "ecg_bench.data.sources.base",
    "ecg_bench.data.mapped.base",
    "ecg_bench.representations.base",
    "ecg_bench.models.encoders",
    "ecg_bench.models.projection",
    "ecg_bench.models.elm",
    "ecg_bench.evaluation.conditions",
    "ecg_bench.evaluation.metrics",
)
"""Packages whose import registers the built-in components (and their options classes). Imported on first
use of a default or of ``build``: plugin discovery, so this shared module imports no layer statically."""


def load_components() -> None:
    for name in COMPONENT_MODULES:
        importlib.import_module(name)


class Options:
    """Mixin of every kind's choice base: ``type`` is the registered name of the component chosen."""

    kind: ClassVar[str] = "component"

    @property
    def type(self) -> str:
        cls = type(self)
        return cls.get_choice_name(cls)  # type: ignore[attr-defined]

    def problems(self) -> list[str]:
        """Range checks of the options (messages name the field, not the path: the caller prefixes it)."""
        return []


@dataclass
class SourceOptions(Options, ChoiceRegistry):
    """Base ECG dataset (``--data.source.type NAME``; ``ecg-bench list --details sources``)."""

    kind: ClassVar[str] = "source"


@dataclass
class MappedOptions(Options, ChoiceRegistry):
    """Conversation dataset joined to the segments (``--data.mapped.type NAME``)."""

    kind: ClassVar[str] = "mapped"


@dataclass
class RepresentationOptions(Options, ChoiceRegistry):
    """How a segment becomes model input (``--model.representation.type NAME``)."""

    kind: ClassVar[str] = "representation"


@dataclass
class EncoderOptions(Options, ChoiceRegistry):
    """ECG encoder of the llava family (``--model.encoder.type NAME``)."""

    kind: ClassVar[str] = "encoder"
    freeze: bool = False
    """Keep the encoder's weights fixed while the ELM trains (e.g. a pretrained encoder); false = train it."""


@dataclass
class ProjectorOptions(Options, ChoiceRegistry):
    """Projector from encoder features to the LLM's hidden size (``--model.projector.type NAME``)."""

    kind: ClassVar[str] = "projector"


@dataclass
class ELMOptions(Options, ChoiceRegistry):
    """ELM family (``--model.elm.type NAME``)."""

    kind: ClassVar[str] = "elm"


@dataclass
class ConditionOptions(Options, ChoiceRegistry):
    """An evaluation condition (an item of ``eval.conditions``)."""

    kind: ClassVar[str] = "condition"


@dataclass
class MetricOptions(Options, ChoiceRegistry):
    """A metric (an item of ``eval.metrics``)."""

    kind: ClassVar[str] = "metric"


@dataclass
class PretrainerOptions(Options, ChoiceRegistry):
    """A pretraining objective (``ecg-bench pretrain NAME``)."""

    kind: ClassVar[str] = "pretrainer"


KINDS: tuple[type, ...] = (SourceOptions, MappedOptions, RepresentationOptions, EncoderOptions, ProjectorOptions,
                           ELMOptions, ConditionOptions, MetricOptions, PretrainerOptions)  # fmt: skip


def choice(base: type, name: str, **options: Any) -> Any:
    """The options of component ``name`` of kind ``base`` (its defaults, with ``options`` set)."""
    load_components()
    try:
        cls = base.get_choice_class(name)
    except KeyError:
        from ecg_bench.errors import UnknownNameError

        raise UnknownNameError(base.kind, name, sorted(base.get_known_choices())) from None
    return cls(**options)


def _default(base: type, name: str, **options: Any) -> Any:
    return field(default_factory=lambda: choice(base, name, **options))


def _default_list(base: type, *names: str) -> Any:
    return field(default_factory=lambda: [choice(base, n) for n in names])


def describe_options(opts: Any) -> str:
    """A chosen component and its options in one line of Markdown: ```conv1d` (dim=128, num_tokens=4, freeze=false)``
    (model cards, logs)."""
    items = [f"{f.name}={json.dumps(to_dict(getattr(opts, f.name)))}" for f in dataclasses.fields(opts)]
    return f"`{opts.type}`" + (f" ({', '.join(items)})" if items else "")


def is_choice(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Options) and hint in KINDS


@dataclass
class DataConfig:
    """Which ECGs, which conversations, which fold."""

    source: SourceOptions = _default(SourceOptions, "synthetic")
    """Base ECG dataset and its options (``--data.source.type ptbxl --data.source.folder records100``)."""
    mapped: MappedOptions = _default(MappedOptions, "synthetic_qa")
    """Conversation dataset joined to the segments, with its options (``--data.mapped.type ecg_qa_ptbxl``)."""
    data_dir: str = ""
    """Folder with the raw dataset files (unused by the synthetic source)."""
    store_dir: str = ""
    """Folder of the preprocessed segment store; empty means ``<output_dir>/store``."""
    workers: int = 0
    """Processes that preprocess the segment store (0 = all CPU cores, 1 = in this process); the store is the same
    whatever the number. An interrupted build resumes from <store_dir>.partial on the next run."""
    rebuild: bool = False
    """Rebuild the segment store even if one with the same settings and source files exists (replaces only a store
    ecg-bench made; an unfinished build is started over). Without it a store is rebuilt when its source files changed."""
    target_fs: int = 250
    """Sampling rate (Hz) of the segment store."""
    segment_seconds: float = 2.0
    """Segment length in seconds (2, 5 or 10 in the original ECG-Bench)."""
    num_folds: int = 5
    """Number of patient-disjoint folds."""
    fold: int = 0
    """Which fold is the test set (0-based)."""
    split: str = "folds"
    """folds = data.num_folds patient-disjoint folds, data.fold the test set; official = the mapped dataset's own
    release split (ECG-QA: train / valid / test folders, data.qa_splits must name all three): train on train, valid
    held out for the validation loss, test evaluated; its patient overlaps are reported in official_split.json."""
    max_train_items: int = 0
    """Cap on training conversations after the split (0 = all)."""
    max_eval_items: int = 0
    """Cap on evaluation conversations (0 = all)."""
    mapped_dir: str = ""
    """Folder with the conversation datasets' downloads (the ECG-QA release, pretrain_mimic.json, ECGInstruct.json, ...;
    see the README), or one such file."""
    mapped_segments: str = "all"
    """Segments a conversation is joined to: all (one item per segment of the record, as the original ECG-Bench) or first."""
    mix: list[MappedOptions] = field(default_factory=list)
    """Conversation datasets combined into one set (replaces data.mapped when given; names or {type: NAME, ...}); all
    join the one store."""
    mix_max_items: list[int] = field(default_factory=list)
    """Caps on the items taken from each data.mix dataset, same order (0 = all; a seeded random subset)."""
    stratify_folds: bool = True
    """Stratify the patient-disjoint folds on each item's answer where labels allow (false = balance sizes only)."""
    hf_dataset: str = ""
    """Read conversations and folds from a Hugging Face dataset instead of a mapper: a folder written by data.export_hf
    or save_to_disk, or a hub id (e.g. one of the original ECG-Bench's fold datasets; needs network)."""
    hf_folds: str = "keep"
    """With data.hf_dataset: keep its folds (checked patient-disjoint) or recompute patient-disjoint folds."""
    export_hf: str = ""
    """Also save the conversations with their folds as a Hugging Face DatasetDict (save_to_disk) in this folder."""
    export_hf_signals: bool = False
    """With data.export_hf: include each item's segment signals (float32), not only segment and record ids."""
    seed: int = 0
    """Seed of the synthetic generator and of the fold assignment."""

    def problems(self) -> list[str]:
        p = []
        if self.num_folds < 2:
            p.append(f"data.num_folds must be >= 2, got {self.num_folds}")
        if not 0 <= self.fold < max(self.num_folds, 1):
            p.append(f"data.fold must be in [0, {self.num_folds - 1}], got {self.fold}")
        if self.target_fs <= 0:
            p.append(f"data.target_fs must be positive, got {self.target_fs}")
        if not self.segment_seconds > 0:
            p.append(f"data.segment_seconds must be positive, got {self.segment_seconds}")
        elif self.target_fs > 0:
            p += segment_problems(self.segment_seconds, self.target_fs)
        for name in ("max_train_items", "max_eval_items"):
            if getattr(self, name) < 0:
                p.append(f"data.{name} must be >= 0 (0 = all), got {getattr(self, name)}")
        if any(n < 0 for n in self.mix_max_items):
            p.append(f"data.mix_max_items must all be >= 0 (0 = all), got {self.mix_max_items}")
        if not 0 <= self.seed < 2**63:
            p.append(f"data.seed must be in [0, 2**63), got {self.seed}")
        if self.workers < 0:
            p.append(f"data.workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.mapped_segments not in ("all", "first"):
            p.append(f"data.mapped_segments must be 'all' or 'first', got {self.mapped_segments!r}")
        if self.hf_folds not in ("keep", "recompute"):
            p.append(f"data.hf_folds must be 'keep' or 'recompute', got {self.hf_folds!r}")
        if self.mix_max_items and len(self.mix_max_items) != len(self.mix):
            p.append(f"data.mix_max_items has {len(self.mix_max_items)} caps for {len(self.mix)} data.mix datasets")
        if self.split not in DATA_SPLITS:
            p.append(f"data.split must be one of {', '.join(DATA_SPLITS)}, got {self.split!r}")
        elif self.split == "official" and not {"train", "test"} <= set(getattr(self.mapped, "qa_splits", ["train", "test"])):
            p.append(f"data.split official trains on the release's train split and tests on its test split; "
                     f"data.mapped.qa_splits must name both, got {self.mapped.qa_splits}")  # fmt: skip
        num_patients = getattr(self.source, "num_patients", None)
        if isinstance(num_patients, int) and 1 <= num_patients < self.num_folds:
            p.append(f"data.source.num_patients ({num_patients}) must be >= data.num_folds ({self.num_folds})")
        return p


@dataclass
class ModelConfig:
    """The ELM: family, LLM, representation, ECG encoder, projector, LoRA."""

    elm: ELMOptions = _default(ELMOptions, "llava")
    """ELM family and its options: llava = encoder + projector + LLM; encoder_free = signal patches + projector + LLM;
    ecg_byte = ECG-Byte tokens added to the LLM's vocabulary (needs model.elm.tokenizer)."""
    llm: str = "smollm2-135m"
    """LLM: a short name (smollm2-135m, tiny), a Hugging Face hub id, a local folder, or a .gguf file."""
    representation: RepresentationOptions = _default(RepresentationOptions, "signal")
    """How a segment becomes model input, with its options."""
    encoder: EncoderOptions = _default(EncoderOptions, "conv1d")
    """ECG encoder of the llava family, with its options (``--model.encoder.type spectral``)."""
    projector: ProjectorOptions = _default(ProjectorOptions, "mlp")
    """Projector from encoder features to the LLM hidden size."""
    lora: bool = True
    """Train LoRA adapters on the LLM (False = LLM frozen unless full_finetune)."""
    full_finetune: bool = False
    """Train every LLM weight (overrides lora)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA path."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names LoRA wraps (projection names of the LLM's attention / MLP)."""
    system_prompt: str = "You read 12-lead ECGs. Answer briefly."
    """System message put before every conversation (empty = the template's own default)."""
    max_length: int = 256
    """Maximum tokens per training example; longer ones are truncated from the left of the history."""

    def problems(self) -> list[str]:
        p = []
        if self.lora_r < 1:
            p.append(f"model.lora_r must be >= 1, got {self.lora_r}")
        if self.lora_alpha <= 0:
            p.append(f"model.lora_alpha must be positive, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            p.append(f"model.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora and not self.full_finetune and not self.lora_target_modules:
            p.append(
                "model.lora_target_modules is empty: name the modules LoRA wraps (e.g. q_proj v_proj) or set model.lora false"
            )
        if self.max_length < 16:
            p.append(f"model.max_length must be >= 16, got {self.max_length}")
        return p


TRAIN_ECG = ("real", "none")
"""Values of train.ecg."""
REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")
"""Values of train.report_to."""
DATA_SPLITS = ("folds", "official")
"""Values of data.split."""


@dataclass
class TrainConfig:
    """Optimisation and checkpointing."""

    max_steps: int = 100
    """Optimizer steps to run (each of batch_size * grad_accum_steps examples); 0 = no training: evaluate the ELM as
    built (the zero-shot baseline: the LLM's own weights, the new encoder / projector / ECG embeddings untrained)."""
    batch_size: int = 8
    """Examples per micro-batch."""
    grad_accum_steps: int = 1
    """Micro-batches whose gradients are summed before one optimizer step."""
    lr: float = 2e-4
    """Peak learning rate of the LLM adapters."""
    encoder_lr: float = 1e-3
    """Peak learning rate of the encoder and projector (new weights learn faster)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.05
    """Fraction of max_steps spent in linear warmup before the cosine decay."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to this fraction of the peak learning rate."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 = no clipping)."""
    precision: str = "auto"
    """fp32, bf16, or auto (bf16 on a CUDA device that supports it, else fp32)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""
    log_every: int = 10
    """Log loss and learning rate every N optimizer steps."""
    save_every: int = 0
    """Save a checkpoint every N optimizer steps (0 = only at the end)."""
    resume_from: str = ""
    """Checkpoint folder to resume from (weights, optimizer, scheduler, step)."""
    num_threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    seed: int = 0
    """Seed of weight init, data order and dropout."""
    ecg: str = "real"
    """What training shows the model: real = each item's ECG; none = text only, the ECG markers dropped as in the
    no_signal condition (the text-only baseline: evaluate it with eval.ablations no_signal)."""
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """Trackers that also receive the per-step metrics, as transformers' report_to: tensorboard (event files in
    <output_dir>/tensorboard), wandb (offline unless WANDB_MODE says otherwise; <output_dir>/wandb), mlflow
    (MLFLOW_TRACKING_URI, else the file store <output_dir>/mlruns), none. metrics.jsonl and run.log are always written."""
    val_fraction: float = 0.0
    """Fraction of the training patients held out (whole patients, seeded by data.seed) to compute a validation
    loss on, never trained on; 0 = none. With data.split official the release's valid split is the held-out set."""
    eval_every: int = 0
    """Compute the validation loss every N optimizer steps and after the last (0 = after the last only); needs a
    held-out set (train.val_fraction > 0 or data.split official)."""
    strategy: str = "auto"
    """How several processes train (launched by torchrun or ``ecg-bench run --nproc N``): single (one process),
    ddp (DistributedDataParallel, each rank a whole model), fsdp (FSDP2 fully_shard: parameters, gradients and
    optimizer state sharded; bf16 parameters with fp32 gradient reduction on CUDA), or auto (ddp under torchrun
    with several processes, else single). batch_size is per process: N processes x batch_size b train like one
    process with batch N x b."""
    gradient_checkpointing: bool = False
    """Recompute the LLM's activations in the backward pass (less memory, about a third more compute)."""
    compile: bool = False
    """torch.compile each LLM decoder layer (faster steps on GPU after a compile warm-up; needs a C++ compiler on CPU)."""
    group_by_length: int = 0
    """Length-grouped batches: take this many global micro-batches of the shuffled epoch at a time, sort their
    examples by token length, cut them into micro-batches again and shuffle those (less padding; the order stays a
    function of seed and step). 0 = off (plain shuffled batches)."""
    packing: int = 0
    """Pack each micro-batch's conversations into rows of up to this many tokens (several per row, position ids
    restarting, attention kept inside each conversation): almost no padding. 0 = off (one conversation per row);
    else at least model.max_length."""

    def problems(self) -> list[str]:
        p = []
        if self.max_steps < 0:
            p.append(f"train.max_steps must be >= 0 (0 = evaluate without training), got {self.max_steps}")
        if self.strategy not in ("auto", "single", "ddp", "fsdp"):
            p.append(f"train.strategy must be auto, single, ddp or fsdp, got {self.strategy!r}")
        if self.packing < 0:
            p.append(f"train.packing must be >= 0 (0 = off), got {self.packing}")
        if self.group_by_length < 0:
            p.append(f"train.group_by_length must be >= 0 (0 = off), got {self.group_by_length}")
        for name in ("batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                p.append(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "encoder_lr"):
            if not getattr(self, name) > 0:
                p.append(f"train.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            p.append(f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            p.append(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:
            p.append(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.precision not in ("auto", "fp32", "bf16"):
            p.append(f"train.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            p.append(f"train.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.max_grad_norm < 0:
            p.append(f"train.max_grad_norm must be >= 0 (0 = no clipping), got {self.max_grad_norm}")
        if self.log_every < 1:
            p.append(f"train.log_every must be >= 1, got {self.log_every}")
        for name, what in (("save_every", "0 = only at the end"), ("num_threads", "0 = torch's default")):
            if getattr(self, name) < 0:
                p.append(f"train.{name} must be >= 0 ({what}), got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:
            p.append(f"train.seed must be in [0, 2**63), got {self.seed}")
        if self.ecg not in TRAIN_ECG:
            p.append(f"train.ecg must be one of {', '.join(TRAIN_ECG)}, got {self.ecg!r}")
        bad = [r for r in self.report_to if r not in REPORT_TO]
        if bad or not self.report_to:
            p.append(f"train.report_to: unknown {bad or '(empty)'}; valid: {', '.join(REPORT_TO)} (several allowed)")
        elif "none" in self.report_to and len(self.report_to) > 1:
            p.append(f"train.report_to names none with other trackers: {self.report_to}")
        if not 0.0 <= self.val_fraction < 1.0:
            p.append(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.eval_every < 0:
            p.append(f"train.eval_every must be >= 0 (0 = after the last step only), got {self.eval_every}")
        return p


@dataclass
class EvalConfig:
    """Generation, metrics and the evaluation conditions."""

    batch_size: int = 32
    """Conversations turns generated per batch."""
    max_new_tokens: int = 16
    """Stop generating after this many new tokens (or at EOS / end of turn)."""
    metrics: list[MetricOptions] = _default_list(MetricOptions, "accuracy", "bleu", "rouge")
    """Metrics, each a name or {type: NAME, option: value}: accuracy, answer_set (ECG-QA's exact match, any order),
    bleu, rouge, meteor (option nltk_data), bertscore (options model, num_layers); `ecg-bench list --details metrics`."""
    conditions: list[ConditionOptions] = _default_list(ConditionOptions, "real", "zeros", "no_signal")
    """Signal conditions, each scored separately, each a name or {type: NAME, option: value}: real = the ECG; zeros =
    an all-zero signal; no_signal = no ECG tokens at all; noise = Gaussian noise (snr_db, seed); shuffled = another
    patient's ECG (seed); leads = only some leads (leads), the others zero. E.g. [real, zeros, {type: noise, snr_db: 5}]."""
    bootstrap_resamples: int = 1000
    """Resamples of the bootstrap behind every metric's 95-percent CI (patients resampled, seeded, deterministic)."""

    def problems(self) -> list[str]:
        p = []
        if self.batch_size < 1:
            p.append(f"eval.batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            p.append(f"eval.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.conditions:
            p.append("eval.conditions must name at least one condition (e.g. [real, zeros, no_signal])")
        names = [c.type for c in self.conditions]
        if len(set(map(_identity, self.conditions))) != len(self.conditions):
            p.append(f"eval.conditions names a condition twice with the same options: {names}")
        if len({m.type for m in self.metrics}) != len(self.metrics):
            p.append(f"eval.metrics names a metric twice: {[m.type for m in self.metrics]}")
        if not 1 <= self.bootstrap_resamples <= 1_000_000:
            p.append(f"eval.bootstrap_resamples must be in [1, 1000000] (1000 is usual), got {self.bootstrap_resamples}")
        return p


def _identity(opts: Any) -> str:
    return json.dumps(to_dict(opts), sort_keys=True)


def condition_label(opts: ConditionOptions, all_conditions: Iterable[ConditionOptions] = ()) -> str:
    """The name results use for a condition: its type, or ``type(option=value, ...)`` when the same type appears
    more than once with other options (e.g. noise(snr_db=5) and noise(snr_db=20))."""
    same = [c for c in all_conditions if c.type == opts.type]
    if len(same) <= 1:
        return opts.type
    d = to_dict(opts)
    d.pop("type", None)
    default = to_dict(type(opts)())
    diff = {k: v for k, v in d.items() if v != default.get(k)} or d
    return f"{opts.type}(" + ", ".join(f"{k}={v}" for k, v in diff.items()) + ")"


@dataclass
class RunConfig:
    """A whole run: data -> model -> training -> evaluation. Saved as config.json with every run."""

    data: DataConfig = field(default_factory=DataConfig)
    """Data settings."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model settings."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Training settings."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    output_dir: str = "runs/{source}"
    """Folder for the store, checkpoints, results.json and logs; ``{source}`` stands for data.source's type, so runs
    on different datasets never share a default folder (the quickstart's is runs/quickstart)."""

    def problems(self) -> list[str]:
        """Every invalid value: first each field against its declared type (strictly: no None, NaN or bool where a
        number or string is declared), then each section's and each component option's range checks."""
        p = check_types(self, "")
        if p:
            return p  # range checks need well-typed values
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                p += tree_problems(section, f"{f.name}.")
        if not self.output_dir:
            p.append("output_dir must name a folder, got ''")
        if not p and self.data.split == "official" and self.train.val_fraction > 0:
            p.append(f"train.val_fraction {self.train.val_fraction} with data.split official: the release's valid split "
                     f"is the held-out set; set train.val_fraction 0")  # fmt: skip
        if not p and self.train.eval_every and not (self.train.val_fraction > 0 or self.data.split == "official"):
            p.append(f"train.eval_every {self.train.eval_every} needs a held-out set: set train.val_fraction > 0 "
                     f"(or data.split official)")  # fmt: skip
        if not p and 0 < self.train.packing < self.model.max_length:
            p.append(f"train.packing {self.train.packing} is shorter than model.max_length {self.model.max_length}: a row "
                     "must hold the longest conversation (use >= model.max_length, or 0 = off)")
        return p

    def validate(self) -> "RunConfig":
        """Resolve ``{source}`` in output_dir; raise ConfigError listing every invalid value, or return self."""
        self.output_dir = self.output_dir.replace("{source}", self.data.source.type)
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "RunConfig":
        return from_dict(cls, d, where)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Load a run config from a .json or .yaml file over the defaults (old keys migrated; unknown keys and values
        that are not of their field's type are a ConfigError listing all of them; range checks are ``validate``'s)."""
        return from_dict(cls, read_config_file(path), where=str(path))


# ---------------------------------------------------------------- dataclass helpers


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under each field of a dataclass (``x: int = 1`` then ``\"\"\"doc\"\"\"``), base classes
    included."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass.__module__ == "builtins":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # made at run time (no source): no docs
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for prev, node in zip(body, body[1:]):
            if (
                isinstance(prev, ast.AnnAssign)
                and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_dict(obj: Any) -> Any:
    """A config (or any of its parts) as plain JSON data; each choice carries its ``type`` first."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"type": obj.type} if isinstance(obj, Options) else {}
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flat_dict(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config mapping (``to_dict``, a config.json) as dotted keys: ``{"model.encoder.type": "conv1d", ...}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flat_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---------------------------------------------------------------- strict value checks

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
MIN_SEGMENT_SAMPLES = 16
"""Fewest samples a segment may have (data.segment_seconds x data.target_fs)."""


def _show(value: Any) -> str:
    """A bad value as a message shows it: short, with its type when it is not a string."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if isinstance(value, str) else f"{text} ({type(value).__name__})"


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the declared scalar type ``hint``, or ConfigError naming ``where``.

    The strict gate every config value passes before draccus decodes the whole (draccus itself would take
    None for an int, True for an int, NaN for a float):

    - int: an int or an integral number or string ("5", "1e3", 5.0); not 2.5, "ten" or a bool.
    - float: an int, a float or a numeric string ("1e-3"); never NaN or infinite, nor a bool.
    - bool: a bool or true/false, yes/no, on/off, 1/0 as a string (any case); not 1 or "maybe".
    - str: a string (an int is taken as its digits, e.g. a folder named 2024); not a bool, float, list or null.
    - list[T] / tuple[T, ...]: a list whose every element is coerced to T (a lone string is not a list).
    - T | None: None or a T.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{where}: unsupported config type {hint}")
        return coerce(value, inner[0], where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError([f"{where}: expected a list, got {_show(value)}"])
        problems, out = [], []
        for i, v in enumerate(value):
            try:
                out.append(coerce(v, args[0] if args else Any, f"{where}[{i}]"))
            except ConfigError as e:
                problems += e.problems
        if problems:
            raise ConfigError(problems)
        return out if origin is list else tuple(out)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError([f"{where}: expected true or false, got {_show(value)}"])
    if hint is int:
        n = _number(value)
        if n is None or isinstance(value, bool):
            raise ConfigError([f"{where}: expected an integer, got {_show(value)}"])
        if isinstance(n, float) and not (math.isfinite(n) and n.is_integer()):
            raise ConfigError([f"{where}: expected an integer, got {_show(value)}"])
        return int(n)
    if hint is float:
        n = _number(value)
        if n is None or isinstance(value, bool):
            raise ConfigError([f"{where}: expected a number, got {_show(value)}"])
        if not math.isfinite(n):
            raise ConfigError([f"{where}: expected a finite number, got {_show(value)}"])
        return float(n)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        quote = " (quote it in YAML)" if value is not None else ""
        raise ConfigError([f"{where}: expected a string, got {_show(value)}{quote}"])
    raise TypeError(f"{where}: unsupported config type {hint}")


def _number(value: Any) -> int | float | None:
    """An int or float from a number or a numeric string, else None (bools are left to the caller)."""
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _list_of_config(hint: Any) -> type | None:
    if typing.get_origin(hint) is list:
        (inner,) = typing.get_args(hint) or (None,)
        return inner if _is_config(inner) else None
    return None


def check_types(obj: Any, prefix: str, recurse: bool = True) -> list[str]:
    """Coerce every field of config ``obj`` (nested sections, chosen options, lists of options) in place to its
    declared type; the problems of those that cannot be."""
    problems = []
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if _is_config(hint):
            if not isinstance(value, hint):
                problems.append(f"{prefix}{f.name}: expected {hint.__name__} options, got {_show(value)}")
            elif recurse:
                problems += check_types(value, f"{prefix}{f.name}.")
            continue
        inner = _list_of_config(hint)
        if inner is not None:
            if not isinstance(value, list) or not all(isinstance(v, inner) for v in value):
                problems.append(f"{prefix}{f.name}: expected a list of {inner.__name__}, got {_show(value)}")
            elif recurse:
                for i, v in enumerate(value):
                    problems += check_types(v, f"{prefix}{f.name}[{i}].")
            continue
        try:
            setattr(obj, f.name, coerce(value, hint, f"{prefix}{f.name}"))
        except ConfigError as e:
            problems += e.problems
    return problems


def tree_problems(obj: Any, prefix: str) -> list[str]:
    """Range checks of a config tree: each section's ``problems()`` (messages carry their own path) and each chosen
    component's ``problems()`` (prefixed here with its path and type)."""
    p: list[str] = []
    if isinstance(obj, Options):
        p += [f"{prefix.rstrip('.')} ({obj.type}): {m}" for m in obj.problems()]
    elif hasattr(obj, "problems"):
        p += obj.problems()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            p += tree_problems(value, f"{prefix}{f.name}.")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    p += tree_problems(v, f"{prefix}{f.name}[{i}].")
    return p


def segment_problems(seconds: float, fs: float) -> list[str]:
    """A segment of ``seconds`` at ``fs`` Hz must be a whole number of samples, and at least MIN_SEGMENT_SAMPLES."""
    n = seconds * fs
    what = f"data.segment_seconds {seconds:.10g} s at data.target_fs {fs:g} Hz is {n:.10g} samples"
    if n < MIN_SEGMENT_SAMPLES - 1e-6:
        return [f"{what}; at least {MIN_SEGMENT_SAMPLES} are needed (data.segment_seconds >= {MIN_SEGMENT_SAMPLES / fs:.10g})"]
    if abs(n - round(n)) > 1e-6:
        near = " or ".join(f"{c / fs:.10g}" for c in sorted({max(math.floor(n), MIN_SEGMENT_SAMPLES), math.ceil(n)}))
        return [f"{what}, not a whole number (the store would silently round it); nearest valid: {near}"]
    return []


# ---------------------------------------------------------------- files


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a .json or .yaml config file (``limits.load_config_file``: size, YAML aliases, nesting and
    values bounded); FileNotFoundError or ConfigError naming the file."""
    path = Path(path)
    try:
        d = load_config_file(path, "run config")
    except DataError as e:
        raise ConfigError([str(e)]) from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError([f"{path}: expected a mapping of config sections, got {type(d).__name__}"])
    return d


# ---------------------------------------------------------------- layering, migration, decoding

RENAMED: dict[str, str] = {"eval.ablations": "eval.conditions"}
"""Keys of older configs that only changed name (old dotted key -> new)."""

MOVED: tuple[tuple[str, str, Any, Callable[[Any], Any]], ...] = (
    # (old dotted key, new dotted key under the component that has the option, old default, value transform)
    ("model.encoder_dim", "model.encoder.dim", 128, lambda v: v),
    ("model.num_ecg_tokens", "model.encoder.num_tokens", 4, lambda v: v),
    ("model.train_encoder", "model.encoder.freeze", True, lambda v: not v),
    ("model.signal2vec", "model.encoder.weights", "", lambda v: v),
    ("model.tokenizer", "model.encoder.tokenizer", "", lambda v: v),
    ("model.tokenizer", "model.elm.tokenizer", "", lambda v: v),
    ("model.patch_size", "model.elm.patch_size", 50, lambda v: v),
    ("model.min_ecg_tokens", "model.elm.min_ecg_tokens", 64, lambda v: v),
    ("model.train_new_embeddings", "model.elm.train_new_embeddings", False, lambda v: v),
    ("data.num_patients", "data.source.num_patients", 120, lambda v: v),
    ("data.records_per_patient", "data.source.records_per_patient", 2, lambda v: v),
    ("data.ptbxl_folder", "data.source.folder", "records500", lambda v: v),
    ("data.report_language", "data.source.report_language", "original", lambda v: v),
    ("data.translate_model", "data.source.translate_model", "", lambda v: v),
    ("data.translation_cache", "data.source.translation_cache", "", lambda v: v),
    ("data.snomed_mapping", "data.source.snomed_mapping", "", lambda v: v),
    ("data.verify_checksums", "data.source.verify_checksums", True, lambda v: v),
    ("data.question_types", "data.mapped.question_types", ["verify", "choose", "query"], lambda v: v),
    ("data.multi_turn_fraction", "data.mapped.multi_turn_fraction", 0.0, lambda v: v),
    ("data.qa_variant", "data.mapped.qa_variant", "both", lambda v: v),
    ("data.qa_splits", "data.mapped.qa_splits", ["train", "valid", "test"], lambda v: v),
    ("eval.noise_snr_db", "eval.conditions[noise].snr_db", 10.0, lambda v: v),
    ("eval.condition_seed", "eval.conditions[noise].seed", 0, lambda v: v),
    ("eval.condition_seed", "eval.conditions[shuffled].seed", 0, lambda v: v),
    ("eval.leads", "eval.conditions[leads].leads", ["I"], lambda v: v),
    ("eval.nltk_data", "eval.metrics[meteor].nltk_data", "", lambda v: v),
    ("eval.bertscore_model", "eval.metrics[bertscore].model", "", lambda v: v),
    ("eval.bertscore_layers", "eval.metrics[bertscore].num_layers", 6, lambda v: v),
)
"""Options that moved from a flat section field into the component that has them (config.json of older runs,
recipes). An old key whose component is not chosen is dropped when it holds its old default, else refused
with the new key named."""

OLD_KEYS: dict[str, str] = {**RENAMED, **{old: new for old, new, *_ in MOVED}}
"""Old dotted key -> its new key (for the error a flag of the old spelling gets)."""


def _get(d: Mapping, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return None
        d = d[part]
    return d


def _shorthand(raw: Any, cls: type, where: str, prefix: str = "") -> Any:
    """``raw`` with each choice given by name alone (``encoder: st_mem``, ``conditions: [real, zeros]``) written out
    as ``{type: NAME}``, and RENAMED keys renamed (recursively, following ``cls``'s declared types)."""
    if not isinstance(raw, Mapping):
        return raw
    raw = dict(raw)
    if not prefix:
        for old, new in RENAMED.items():
            sec, key = old.split(".")
            nkey = new.split(".")[1]
            if isinstance(raw.get(sec), Mapping) and key in raw[sec]:
                raw[sec] = dict(raw[sec])
                value = raw[sec].pop(key)
                raw[sec].setdefault(nkey, value)
                log.info("%s: config key %s is now %s", where, old, new)
    hints = _hints(cls) if dataclasses.is_dataclass(cls) else {}
    for k, v in list(raw.items()):
        hint = hints.get(k)
        if hint is None:
            continue
        if is_choice(hint):
            raw[k] = {"type": v} if isinstance(v, str) else v
        elif _list_of_config(hint) is not None and isinstance(v, list):
            raw[k] = [{"type": x} if isinstance(x, str) else x for x in v]
        elif _is_config(hint):
            raw[k] = _shorthand(v, hint, where, f"{prefix}{k}.")
    return raw


def merge(low: Any, high: Any) -> Any:
    """``high`` layered over ``low``: mappings merge key by key, except that a choice whose ``type`` changes is replaced
    whole (the old component's options do not carry over); anything else (lists too) is replaced."""
    if isinstance(low, Mapping) and isinstance(high, Mapping):
        if "type" in high and low.get("type") != high["type"]:
            return copy.deepcopy(dict(high))
        out = dict(low)
        for k, v in high.items():
            out[k] = merge(low[k], v) if k in low else copy.deepcopy(v)
        return out
    return copy.deepcopy(high)


def _choice_class(base: type, raw: Any) -> type | None:
    name = raw.get("type") if isinstance(raw, Mapping) else None
    return base.get_known_choices().get(name) if isinstance(name, str) else None


def migrate(layer: dict[str, Any], below: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    """Move the MOVED keys of one layer (an older config.json, a recipe) into the component that has the option,
    the components chosen being those of ``below`` with this layer over it; problems for a changed old value
    whose component is not the one chosen."""
    layer = copy.deepcopy(dict(layer))
    resolved = merge(below, layer)
    problems: list[str] = []
    olds = dict.fromkeys(old for old, *_ in MOVED)
    for old in olds:
        sec, key = old.split(".")
        section = layer.get(sec)
        if not isinstance(section, dict) or key not in section:
            continue
        value = section.pop(key)
        taken = False
        for o, new, old_default, fn in MOVED:
            if o != old:
                continue
            m = re.fullmatch(r"(\w+)\.(\w+)(?:\[(\w+)\])?\.(\w+)", new)
            assert m, new
            nsec, name, item_type, opt = m.groups()
            target = (resolved.get(nsec) or {}).get(name)
            if item_type is None:
                cls = _choice_class(_hints(_SECTIONS[nsec])[name], target)
                if cls is not None and opt in {f.name for f in dataclasses.fields(cls)}:
                    node = layer.setdefault(nsec, {}).setdefault(name, {})
                    node.setdefault(opt, fn(value))
                    taken = True
            elif isinstance(target, list) and any(isinstance(t, Mapping) and t.get("type") == item_type for t in target):
                items = layer.setdefault(nsec, {}).setdefault(name, copy.deepcopy(target))
                for t in items:
                    if isinstance(t, dict) and t.get("type") == item_type:
                        t.setdefault(opt, fn(value))
                taken = True
            if taken and value != old_default:
                log.info("%s: config key %s is now %s", where, old, new)
        defaults = [d for o, _, d, _ in MOVED if o == old]
        if not taken and value not in defaults:
            news = " or ".join(n for o, n, *_ in MOVED if o == old)
            problems.append(f"{where}: {old} is now {news}, an option of a component this config does not choose "
                            f"(choose that component, or drop the key)")  # fmt: skip
    return layer, problems


def _loc(where: str, path: str) -> str:
    """Where a value came from, as messages show it: ``--train.lr`` for a flag, ``FILE: train.lr`` for a file."""
    if where == "flags":
        return f"--{path}"
    return f"{where}: {path}" if where else path


def _check_raw(raw: Any, cls: type, where: str, prefix: str, context: Any = None) -> tuple[Any, list[str]]:
    """Unknown keys (with the valid ones listed), unknown choice names and values of the wrong type in the raw
    mapping for dataclass ``cls``; returns the mapping with every value coerced to its declared type. ``context``
    is the same part of the whole layered config (it tells which component a partial layer's options belong to)."""
    path = prefix.rstrip(".") or "the run config"
    context = context if isinstance(context, Mapping) else {}
    if not isinstance(raw, Mapping):
        return raw, [f"{_loc(where, path)}: expected a mapping for {cls.__name__}, got {_show(raw)}"]
    problems: list[str] = []
    out: dict[str, Any] = {}
    is_opts = isinstance(cls, type) and issubclass(cls, Options)
    if is_opts:
        out["type"] = raw.get("type", context.get("type"))
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in raw if k not in names and not (k == "type" and is_opts))
    if unknown:
        what = f"{path} ({out['type']})" if is_opts else path
        moved = [f"{prefix}{k} is now {OLD_KEYS[prefix + k]}" for k in unknown if prefix + k in OLD_KEYS]
        loc = f"{where}: " if where and where != "flags" else ""
        problems.append(f"{loc}unknown key(s) {unknown} for {what}; valid: {sorted(names)}"
                        + (f" ({'; '.join(moved)})" if moved else ""))  # fmt: skip
    for k, v in raw.items():
        if k not in names:
            continue
        hint = hints[k]
        inner = _list_of_config(hint)
        if is_choice(hint) or (inner is not None and is_choice(inner)):
            base = hint if inner is None else inner
            if inner is not None and not isinstance(v, list):
                problems.append(f"{_loc(where, prefix + k)}: expected a list of {base.kind} names or {{type: NAME, ...}}, "
                                f"got {_show(v)}")  # fmt: skip
                continue
            items = [v] if inner is None else v
            ctx_items = [context.get(k)] if inner is None else [None] * len(items)
            decoded = []
            for i, (item, ctx) in enumerate(zip(items, ctx_items)):
                at = f"{prefix}{k}" + ("" if inner is None else f"[{i}]")
                typed = dict(item) if isinstance(item, Mapping) else item
                if isinstance(typed, dict) and "type" not in typed and isinstance(ctx, Mapping) and "type" in ctx:
                    typed["type"] = ctx["type"]
                sub = _choice_class(base, typed)
                if sub is None:
                    name = typed.get("type") if isinstance(typed, Mapping) else typed
                    valid = ", ".join(sorted(base.get_known_choices()))
                    problems.append(f"{_loc(where, at)}: unknown {base.kind} {name!r}; valid: {valid}")
                    continue
                d, p = _check_raw(typed, sub, where, f"{at}.", ctx)
                problems += p
                decoded.append(d)
            if inner is not None or decoded:
                out[k] = decoded if inner is not None else decoded[0]
        elif _is_config(hint):
            out[k], p = _check_raw(v, hint, where, f"{prefix}{k}.", context.get(k))
            problems += p
        else:
            try:
                out[k] = coerce(v, hint, _loc(where, prefix + k))
            except ConfigError as e:
                problems += e.problems
    return out, problems


def _decode(cls: type, raw: dict[str, Any], where: str) -> Any:
    try:
        return draccus.decode(cls, raw)
    except ConfigError:
        raise
    except Exception as e:  # draccus.utils.DecodingError / ParsingError, or a check in an options' __post_init__
        cause = e
        while cause.__cause__ is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise ConfigError([f"{where}: {m}" for m in cause.problems]) from None
        raise ConfigError([f"{where}: {e}"]) from None


def layered(base: Any, layers: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[Any, list[str]]:
    """``base`` (a config instance) with each ``(where, mapping)`` layer over it, in order; (config or None, problems)."""
    load_components()
    cls = type(base)
    raw: Any = to_dict(base)
    problems: list[str] = []
    for where, layer in layers:
        moved, p = migrate(_shorthand(layer, cls, where), raw, where)
        raw = merge(raw, moved)
        problems += p + _check_raw(moved, cls, where, "", raw)[1]  # each layer's problems, named by where they are
    checked, p = _check_raw(raw, cls, "", "", raw)  # a bad value is left out: its field keeps the default
    if issubclass(cls, Options):  # a component's options as the whole config (pretrain NAME): its type is its class
        checked.pop("type", None)
    if not problems:
        problems += p
    try:
        return _decode(cls, checked, "config"), problems
    except ConfigError as e:
        return None, problems + e.problems


def from_dict(cls: type, d: Mapping[str, Any], where: str = "config") -> Any:
    """Build a config from a mapping over ``cls``'s defaults; ConfigError lists every unknown key and bad value."""
    cfg, problems = layered(_instance(cls), [(where, d)])
    if problems:
        raise ConfigError([p if p.startswith(where) else f"{where}: {p}" for p in problems])
    return cfg


def _instance(cls: type) -> Any:
    load_components()
    return cls()


def deflatten(overrides: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``{"train.lr": x}`` -> ``{"train": {"lr": x}}``."""
    out: dict[str, Any] = {}
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for dotted, value in items:
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {} if nxt is None else {"type": nxt} if isinstance(nxt, str) else nxt
            node = nxt
        if isinstance(node.get(leaf), dict) and isinstance(value, str):  # --model.encoder st_mem after .dim: a type
            node[leaf] = merge(node[leaf], {"type": value})
        else:
            node[leaf] = value
    return out


def build(
    base: Any,
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    checks: Iterable[Callable[[Any], list[str]]] = (),
) -> Any:
    """Layer a config: ``base`` (a command's preset) < the file at ``path`` < ``overrides`` (dotted name -> value,
    e.g. from flags: ``{"train.lr": "1e-3", "model.encoder.type": "spectral"}``). Then the strict type checks, the
    range checks and ``checks`` (e.g. registry names). Every problem of every layer and section is raised together
    in one ConfigError; nothing else is done."""
    problems: list[str] = []
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path:
        try:
            layers.append((str(path), read_config_file(path)))
        except FileNotFoundError as e:
            problems.append(str(e))
        except ConfigError as e:
            problems += e.problems
    flags = deflatten(overrides)
    if flags:
        layers.append(("flags", flags))
    cfg, p = layered(base, layers)  # with problems, cfg holds the defaults where values were bad
    problems += p
    if cfg is not None:
        if hasattr(cfg, "validate"):
            try:
                cfg.validate()
            except ConfigError as e:
                problems += e.problems
        else:
            problems += check_types(cfg, "") or [m for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))
                                                  for m in tree_problems(getattr(cfg, f.name), f"{f.name}.")]
        for check in checks:  # registry-level checks need only well-typed values
            problems += check(cfg)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg


def iter_leaf_fields(cls: type, prefix: str = ""):
    """Yield (dotted_name, type, default, doc) for every field that is not a section, depth first (a choice
    field is one leaf: its options are the chosen component's, see ``iter_options``)."""
    hints = _hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if _is_config(t) and not is_choice(t):
            yield from iter_leaf_fields(t, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield f"{prefix}{f.name}", t, default, docs.get(f.name, "")


def iter_options(cls: type):
    """Yield (name, type, default, doc) for each option of options dataclass ``cls``."""
    hints, docs = _hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield f.name, hints[f.name], default, docs.get(f.name, "")


def add_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **kw: Any) -> None:
    """Add ``--name`` (flags are spelled with underscores, like ``--section.field_name``) and, for a name with an
    underscore, its old dashed spelling ``--na-me`` as a hidden alias of the same destination."""
    kw.setdefault("dest", name)
    p.add_argument(f"--{name}", **kw)
    if "_" in name:
        alias = {k: v for k, v in kw.items() if k not in ("required", "default", "help")}
        p.add_argument(f"--{name.replace('_', '-')}", default=argparse.SUPPRESS, help=argparse.SUPPRESS, **alias)


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}
