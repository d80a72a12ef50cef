"""The whole path, as functions the CLI commands call:

records -> segment store -> conversations -> patient-disjoint folds -> ELM -> training -> evaluation
-> ``results.json`` and a printed table.

Under torchrun (several processes) ``run`` joins the process group; rank 0 claims the output folder and
builds the store and conversations while the others wait, then hands every rank the same train and test
items (``prepare_data_once``); each rank reads the memory-mapped store. Rank 0 alone writes config.json,
checkpoints and results.json; evaluation is sharded and gathered (``evaluation.evaluator``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import platform
import random
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_bench import folders, run_lock
from ecg_bench.config import RunConfig, describe_options
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mix import mapped_names, prepare_conversations
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.splits import holdout_patients
from ecg_bench.data.store import SegmentStore, open_store, setting_changes
from ecg_bench.devices import resolve_device, resolve_dtype
from ecg_bench.errors import ConfigError
from ecg_bench.evaluation.baselines import majority_baseline
from ecg_bench.evaluation.evaluator import evaluate
from ecg_bench.evaluation.results_file import write_results
from ecg_bench.evaluation.statistics import results_tables
from ecg_bench.inference import build_from_checkpoint, with_absolute_paths
from ecg_bench.logging_utils import get_logger, log_to_file
from ecg_bench.models.elm import build_elm, input_problem
from ecg_bench.representations.base import REPRESENTATIONS, build_representation
from ecg_bench.signals.leads import LEADS
from ecg_bench.training import distributed
from ecg_bench.training.checkpoint import check_not_trained_on, check_run_inputs, training_data_record
from ecg_bench.training.tracking import LOG_FILE, provenance, report_to_problems
from ecg_bench.training.trainer import Trainer, summarize

log = get_logger(__name__)


ZERO_SHOT_NOTE = (
    "the LLM's own weights; the ELM's new parts (encoder, projector, ECG-token embeddings) untrained, "
    "so the fair zero-shot score of the base LLM is its no_signal condition"
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class PreparedData:
    store: SegmentStore
    train: list[dict]
    test: list[dict]
    folds_file: Path
    val: list[dict] = dataclass_field(default_factory=list)
    """Held-out training patients' conversations for the validation loss (train.val_fraction), or the release's
    valid split (data.split official); never trained on."""


def store_dir(cfg: RunConfig) -> Path:
    return Path(cfg.data.store_dir or Path(cfg.output_dir) / "store")


# Data settings that change nothing in the files a run folder holds (store, conversations, folds.json).
_NOT_DATA_IDENTITY = ("workers", "rebuild", "max_train_items", "max_eval_items", "fold", "export_hf", "export_hf_signals")


def claim_output(cfg: RunConfig, kind: str = "run", new_results: bool = False) -> Path:
    """Make ``output_dir`` this run's folder (``ecg_bench.folders.claim``) without writing over another run.

    A folder that already holds ``results.json`` is refused when ``new_results`` (this run would write
    its own results there), unless this run resumes from a checkpoint inside it; otherwise (the
    ``data`` command) only when its config.json names other data settings.
    """
    out = folders.claim(cfg.output_dir, kind)
    results = out / "results.json"
    if not results.exists():
        return out
    if new_results:
        resume = cfg.train.resume_from
        if not (resume and out.resolve() in Path(resume).resolve().parents):
            raise folders.FolderError(
                f"{out} already holds a finished run's results ({results}); a new run never writes over them: choose "
                f"another --output_dir, or continue that run with --train.resume_from {out / 'checkpoints' / 'final'}"
            )
        return out
    try:  # read through the config loader, so both sides compare in the same keys
        old = RunConfig.from_dict(json.loads((out / "config.json").read_text())).to_dict()["data"]
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        old = None
    changed = setting_changes(old, cfg.to_dict()["data"], _NOT_DATA_IDENTITY) if isinstance(old, dict) else ["(unknown)"]
    if changed:
        raise folders.FolderError(
            f"{out} holds a finished run ({results}) made with other data settings ({'; '.join(changed)}); "
            f"writing this data there would change that run's store and folds: choose another --output_dir"
        )
    return out


def prepare_data(cfg: RunConfig, kind: str = "run") -> PreparedData:
    """Build (or reuse) the segment store and the conversations, assign folds, and split by patient; the output
    folder is held meanwhile (``run_lock``: a run writing it refuses the ``data`` command, and the reverse)."""
    source = SOURCES.get(cfg.data.source.type)  # unknown names fail before any work
    for name in [] if cfg.data.hf_dataset else mapped_names(cfg.data):
        MAPPED.get(name)
    with run_lock.hold(folders.claim(cfg.output_dir, kind), "a run folder" if kind == "run" else "an evaluation folder"):
        return _prepare_data(cfg, kind, source)


def _prepare_data(cfg: RunConfig, kind: str, source: Any) -> PreparedData:
    d = cfg.data
    claim_output(cfg, kind)
    sdir = store_dir(cfg)
    src = source(d)
    store = open_store(cfg, src, sdir)
    # mapped / mixed / imported conversations, mapping_report.json, checked folds (folds.json), HF export
    conv = prepare_conversations(store, d, cfg.output_dir)
    train, test, folds_file, val = conv.train, conv.test, conv.folds_file, conv.val
    if cfg.train.val_fraction > 0:  # whole training patients, held out before any cap
        train, val = holdout_patients(train, cfg.train.val_fraction, d.seed)
    rng = np.random.default_rng(d.seed)
    if d.max_train_items and len(train) > d.max_train_items:
        train = [train[i] for i in sorted(rng.choice(len(train), d.max_train_items, replace=False))]
    if d.max_eval_items and len(test) > d.max_eval_items:
        test = [test[i] for i in sorted(rng.choice(len(test), d.max_eval_items, replace=False))]
    if d.max_eval_items and len(val) > d.max_eval_items:  # the validation loss runs every eval_every steps: keep it small
        val = [val[i] for i in sorted(np.random.default_rng([d.seed, 8]).choice(len(val), d.max_eval_items, replace=False))]
    held = f", {len(val)} held out for validation" if val else ""
    if d.split == "official":
        log.info("official split: %d train and %d test conversations%s", len(train), len(test), held)
    else:
        log.info("fold %d/%d: %d train and %d test conversations, patient-disjoint%s", d.fold, d.num_folds, len(train),
                 len(test), held)  # fmt: skip
    return PreparedData(store, train, test, folds_file, val)


def prepare_data_once(cfg: RunConfig, kind: str = "run") -> PreparedData:
    """``prepare_data`` on rank 0 while the other ranks wait (the data barrier); every rank gets the same train,
    test and validation items and opens the store rank 0 built, read-only. In one process: ``prepare_data``."""
    if not distributed.current().active:
        return prepare_data(cfg, kind)

    def build() -> tuple[str, list[dict], list[dict], str, list[dict]]:
        data = prepare_data(cfg, kind)
        return str(data.store.path), data.train, data.test, str(data.folds_file), data.val

    store, train, test, folds, val = distributed.main_first(build, "preparing the data")
    return PreparedData(SegmentStore(store), train, test, Path(folds), val)


def _representation(cfg: RunConfig):
    return build_representation(cfg.model.representation, float(cfg.data.target_fs))


def input_dims(cfg: RunConfig, store: SegmentStore) -> tuple[int, float]:
    """Segment length and rate the model is built for, from the config (``data.segment_seconds * data.target_fs``),
    checked against the store it will read: a model is never shaped by whichever store happens to be there."""
    seg_len = int(round(cfg.data.segment_seconds * cfg.data.target_fs))
    if store.segment_len != seg_len or abs(store.fs - cfg.data.target_fs) > 1e-6:
        raise ConfigError([
            f"the segment store {store.path} holds {store.segment_len}-sample segments at {store.fs:g} Hz, but the config "
            f"builds the model for {seg_len} samples at {cfg.data.target_fs:g} Hz (data.segment_seconds "
            f"{cfg.data.segment_seconds:g} x data.target_fs); use a store built with these settings"
        ])  # fmt: skip
    return seg_len, float(cfg.data.target_fs)


def check_names(cfg: RunConfig) -> None:
    """Raise ``config_problems`` (registry names, LLM spec, source rate) as one ConfigError, before any work."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(problems)


def config_problems(cfg: RunConfig) -> list[str]:
    """What the config's values alone cannot tell: unknown registry names, an LLM that is neither a short name,
    a local folder, a .gguf file nor a hub id, and a data.target_fs above the source's own rate (nothing is
    loaded or read). Every problem, for the CLI to report with the range checks before any work."""
    from ecg_bench.models.llm import llm_spec_problem

    problems = []  # component names and their options were checked when the config was decoded
    problems += report_to_problems(cfg.train.report_to)
    rep = cfg.model.representation.type
    if rep != "ecg_byte":  # ecg_byte has its own message (its options' problems)
        problem = input_problem(cfg.model, REPRESENTATIONS.get(rep).kind)
        if problem:
            problems.append(problem)
    llm = llm_spec_problem(cfg.model.llm)
    if llm:
        problems.append(llm)
    hf = [f"data.{k}" for k in ("export_hf", "hf_dataset") if getattr(cfg.data, k)]
    if hf and importlib.util.find_spec("datasets") is None:  # known before the store is built, not after
        problems.append(f"{' and '.join(hf)} need the 'datasets' package, which is not installed: pip install 'ecg-bench[hf]'")
    if cfg.data.source.type in SOURCES:
        native = getattr(SOURCES.get(cfg.data.source.type), "native_rate", lambda _: None)(cfg.data)
        if native and cfg.data.target_fs > native:
            problems.append(f"data.target_fs {cfg.data.target_fs} Hz is above the {cfg.data.source.type} source's own rate of "
                            f"{native:g} Hz: resampling up adds no information; use data.target_fs <= {native:g}")  # fmt: skip
    return list(dict.fromkeys(problems))


def run(cfg: RunConfig, train: bool = True) -> dict[str, Any]:
    """Train (unless ``train`` is False and a checkpoint is given) and evaluate; write results.json.

    Under torchrun every process calls this; see the module doc for who does what."""
    cfg.validate()
    check_names(cfg)
    device = resolve_device(cfg.train.device)
    resolve_dtype(cfg.train.precision, device)  # an unusable device fails before any work
    check_run_inputs(cfg, train)  # a corrupt .gguf or checkpoint file is refused before the data is built
    created = distributed.init_from_env(device.type)
    try:
        distributed.resolve_strategy(cfg.train.strategy, distributed.current().world_size)
        return _run(cfg, train)
    finally:
        if created:
            distributed.shutdown()


def _run(cfg: RunConfig, train: bool) -> dict[str, Any]:
    rank = distributed.current()
    if not rank.main:  # one log, rank 0's; the others speak only of problems
        logging.getLogger("ecg_bench").setLevel(max(logging.WARNING, logging.getLogger("ecg_bench").level))
    kind = "run" if train else "eval"
    writer = contextlib.ExitStack()  # rank 0's hold on the folder: one writer at a time (ecg_bench.run_lock)
    what = "a run folder" if train else "an evaluation folder"

    def claim() -> Path:
        writer.enter_context(run_lock.hold(folders.claim(cfg.output_dir, kind), what))  # before anything is written
        out = claim_output(cfg, kind, new_results=True)
        cfg.save(out / "config.json")
        return out

    with writer:
        out = distributed.main_first(claim, f"claiming the output folder {cfg.output_dir}")
        if not rank.main:
            return _run_in(cfg, train, out, kind)
        with log_to_file(out / LOG_FILE):  # the run's log beside its results (appended when it resumes); rank 0's only
            return _run_in(cfg, train, out, kind)


def _run_in(cfg: RunConfig, train: bool, out: Path, kind: str) -> dict[str, Any]:
    rank = distributed.current()
    device = distributed.rank_device(resolve_device(cfg.train.device), rank)  # each rank on its own GPU
    seed_everything(cfg.train.seed)
    t0 = time.time()
    data = prepare_data_once(cfg, kind)
    rep = _representation(cfg)
    seg_len, fs = input_dims(cfg, data.store)
    out_spec = rep.output(seg_len)
    if out_spec.variable_length:
        raise ConfigError([f"model.representation {cfg.model.representation.type!r} makes variable-length {out_spec.kind}; "
                           f"the ELMs read fixed-shape signals or images (elm=ecg_byte tokenizes the signal)"])  # fmt: skip
    in_leads, seq_len = out_spec.shape if out_spec.kind == "signal" and len(out_spec.shape) == 2 else (len(LEADS), seg_len)
    checkpoint = None if train else cfg.train.resume_from
    if checkpoint:  # the load path of from_pretrained: dimensions and vocabulary from the checkpoint, checked below
        check_not_trained_on(checkpoint, data.test, cfg)
        elm, processor, contract = build_from_checkpoint(checkpoint, cfg.model, device)
        if (contract.segment_len, contract.fs) != (seg_len, fs) or contract.representation_config() != cfg.model.representation:
            raise ConfigError([
                f"{checkpoint} was trained on {contract.segment_len}-sample segments at {contract.fs:g} Hz "
                f"({describe_options(contract.representation_config())} representation); this evaluation reads {seg_len} "
                f"samples at {fs:g} Hz ({describe_options(cfg.model.representation)}): evaluate with the checkpoint's "
                "data.segment_seconds, data.target_fs and model.representation"
            ])  # fmt: skip
    else:
        elm, processor = build_elm(cfg.model, seq_len=seq_len, in_leads=in_leads, fs=fs, kind=out_spec.kind,
                                   shape=out_spec.shape)  # fmt: skip
    train_ds = ConversationDataset(data.train, data.store, rep)
    test_ds = ConversationDataset(data.test, data.store, rep.for_evaluation())
    training: dict[str, Any] = {}
    if train and cfg.train.max_steps == 0:
        elm.to(device)
        training = {"steps": 0, "zero_shot": True, "note": ZERO_SHOT_NOTE}
        log.info("train.max_steps 0: evaluating the ELM as built (zero-shot; %s)", ZERO_SHOT_NOTE)
    elif train:
        trainer = Trainer(elm, processor, train_ds, with_absolute_paths(cfg), out / "checkpoints")
        trainer.training_data = training_data_record(cfg, data)
        trainer.run_dir = out
        trainer.val_dataset = ConversationDataset(data.val, data.store, rep.for_evaluation()) if data.val else None
        result = trainer.train()
        training = summarize(result)
        training.update(ecg=cfg.train.ecg, val_items=len(data.val))
        device = trainer.device
        if trainer.strategy == "fsdp":  # generation reads whole weights: a fresh model from the final checkpoint
            elm, processor, _ = build_from_checkpoint(result.checkpoint, cfg.model, device)
    else:
        elm.to(device)
    if cfg.train.ecg == "none" and [c for c in cfg.eval.conditions if c.type != "no_signal"]:
        log.info("train.ecg none (text-only baseline): its fair condition is no_signal; the others show it ECGs it never saw")
    results = evaluate(elm, processor, test_ds, cfg.eval, device)
    baselines = {"majority": majority_baseline(data.train, data.test, cfg.eval)}  # next to the conditions, before samples
    results = {"conditions": results.pop("conditions"), "baselines": baselines, **results}
    results = {
        "config": cfg.to_dict(),
        "training": training,
        "data": {
            "train_items": len(train_ds),
            "test_items": len(test_ds),
            "store": str(data.store.path),
            "folds": str(data.folds_file),
        },
        "environment": {
            "torch": torch.__version__,
            "device": str(device),
            "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(),
            **provenance(),
            "processes": rank.world_size,
        },
        "seconds": round(time.time() - t0, 1),
        **results,
    }
    if rank.main:
        write_results(results, out / "results.json")
    distributed.barrier()  # results.json is there when any rank returns
    return results


def results_table(results: dict[str, Any]) -> str:
    """Metrics with their patient-clustered 95 % CIs per condition and the majority-answer baseline, then per
    question type and topic."""
    majority = (results.get("baselines") or {}).get("majority")
    return results_tables({**results["conditions"], **({"majority answer": majority} if majority else {})})
