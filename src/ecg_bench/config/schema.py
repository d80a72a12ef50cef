"""The run config: one nested dataclass made of sub-configs (data, model, train, eval), saved with every run as JSON.

Each field carries a docstring (the string literal right below it): the ``--help`` text and ``ecg-bench list
--details KIND``. A section's ``problems()`` are its range checks; ``RunConfig.validate`` runs them all.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config.coerce import check_types, segment_problems, tree_problems
from ecg_bench.config.decode import from_dict, read_config_file
from ecg_bench.config.fields import path_field
from ecg_bench.config.options import (
    ConditionOptions,
    ELMOptions,
    EncoderOptions,
    MappedOptions,
    MetricOptions,
    ProjectorOptions,
    RepresentationOptions,
    SourceOptions,
    _default,
    _default_list,
    to_dict,
)
from ecg_bench.errors import ConfigError


@dataclass
class DataConfig:
    """Which ECGs, which conversations, which fold."""

    source: SourceOptions = _default(SourceOptions, "synthetic")
    """Base ECG dataset and its options (``--data.source.type ptbxl --data.source.folder records100``)."""
    mapped: MappedOptions = _default(MappedOptions, "synthetic_qa")
    """Conversation dataset joined to the segments, with its options (``--data.mapped.type ecg_qa_ptbxl``)."""
    data_dir: str = path_field()
    """Folder with the raw dataset files (unused by the synthetic source)."""
    store_dir: str = path_field()
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
    release split (ECG-QA: train / valid / test folders, data.mapped.qa_splits must name all three): train on train, valid
    held out for the validation loss, test evaluated; its patient overlaps are reported in official_split.json."""
    max_train_items: int = 0
    """Cap on training conversations after the split (0 = all)."""
    max_eval_items: int = 0
    """Cap on evaluation conversations (0 = all)."""
    mapped_dir: str = path_field()
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
    hf_dataset: str = path_field(name_ok=True)
    """Read conversations and folds from a Hugging Face dataset instead of a mapper: a folder written by data.export_hf
    or save_to_disk, or a hub id (e.g. one of the original ECG-Bench's fold datasets; needs network)."""
    hf_folds: str = "keep"
    """With data.hf_dataset: keep its folds (checked patient-disjoint) or recompute patient-disjoint folds."""
    export_hf: str = path_field()
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
    llm: str = path_field("smollm2-135m", name_ok=True)
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
    resume_from: str = path_field()
    """Checkpoint folder to resume from (weights, optimizer, scheduler, step)."""
    num_threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    seed: int = 0
    """Seed of weight init, data order and dropout."""
    ecg: str = "real"
    """What training shows the model: real = each item's ECG; none = text only, the ECG markers dropped as in the
    no_signal condition (the text-only baseline: evaluate it with eval.conditions no_signal)."""
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
    output_dir: str = path_field("runs/{source}")
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
        """Load a run config from a .json or .yaml file over the defaults (unknown keys and values
        that are not of their field's type are a ConfigError listing all of them; range checks are ``validate``'s)."""
        return from_dict(cls, read_config_file(path), where=str(path))


