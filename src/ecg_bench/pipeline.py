"""The whole path, as functions the CLI commands call:

records -> segment store -> conversations -> patient-disjoint folds -> ELM -> training -> evaluation
-> ``results.json`` and a printed table.

Under torchrun (several processes) ``run`` joins the process group; rank 0 claims the output folder and
builds the store and conversations while the others wait, then hands every rank the same train and test
items (``prepare_data_once``); each rank reads the memory-mapped store. Rank 0 alone writes config.json,
checkpoints and results.json; evaluation is sharded and gathered (``evaluation.evaluator``).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import platform
import random
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_bench import folders
from ecg_bench.config import RunConfig, describe_options
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mix import mapped_names, prepare_conversations
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.splits import holdout_patients
from ecg_bench.data.store import SegmentStore, build_store, store_lock
from ecg_bench.errors import ConfigError, DataError, UnknownNameError
from ecg_bench.evaluation.baselines import majority_baseline
from ecg_bench.evaluation.evaluator import evaluate
from ecg_bench.evaluation.statistics import results_tables
from ecg_bench.inference import CHECKPOINT_FILES, build_from_checkpoint
from ecg_bench.logging_utils import get_logger, log_to_file
from ecg_bench.models.elm import build_elm, input_problem
from ecg_bench.representations.base import REPRESENTATIONS, build_representation
from ecg_bench.signals.leads import LEADS
from ecg_bench.training import distributed
from ecg_bench.training.checkpoint import TRAINING_DATA_FILE, check_run_inputs
from ecg_bench.training.tracking import LOG_FILE, provenance, report_to_problems
from ecg_bench.training.trainer import Trainer, resolve_device, resolve_dtype, summarize

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


def _changes(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    keys = sorted(k for k in {*old, *new} if k not in ignore and old.get(k) != new.get(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


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
    try:  # read through the config loader, so a config.json of an older version compares in today's keys
        old = RunConfig.from_dict(json.loads((out / "config.json").read_text())).to_dict()["data"]
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        old = None
    changed = _changes(old, cfg.to_dict()["data"], _NOT_DATA_IDENTITY) if isinstance(old, dict) else ["(unknown)"]
    if changed:
        raise folders.FolderError(
            f"{out} holds a finished run ({results}) made with other data settings ({'; '.join(changed)}); "
            f"writing this data there would change that run's store and folds: choose another --output_dir"
        )
    return out


def store_status(sdir: Path, settings: dict[str, Any], fingerprint: dict[str, Any]) -> tuple[str, str]:
    """Whether the store at ``sdir`` can serve ``settings``: (status, detail) with status one of
    missing, current, no_fingerprint (built before fingerprints were recorded), other_settings, source_changed."""
    if not SegmentStore.exists(sdir):
        return "missing", ""
    meta = SegmentStore(sdir).meta
    old = meta.get("source_settings")
    if not isinstance(old, dict):
        return "other_settings", "no source_settings in its meta.json"
    old = {**old, "data_dir": _abs(old.get("data_dir", ""))}
    changed = _changes(old, settings)
    if changed:
        return "other_settings", "; ".join(changed)
    got = meta.get("source_fingerprint")
    if got is None:
        return "no_fingerprint", ""
    if got != fingerprint:
        keys = [k for k in ("files", "bytes", "newest_mtime_ns") if got.get(k) != fingerprint.get(k)]
        detail = ", ".join(f"{k} {got.get(k)} -> {fingerprint.get(k)}" for k in keys) or "same counts, other file names or times"
        return "source_changed", detail
    return "current", ""


def open_store(cfg: RunConfig, src: Any, sdir: Path) -> SegmentStore:
    """Reuse the store at ``sdir`` if it was built with these settings from the same source files; else build it.

    Holds the store's lock while deciding and building, so a second writer waits and then reuses
    what the first built. A store with other settings is never silently replaced: refused unless
    ``data.rebuild``. Changed source files (a record repaired or added) rebuild it, with a log line.
    """
    d = cfg.data
    settings = source_settings(cfg, src)
    if d.data_dir:  # refusals before the lock: no lock file is left in a folder that is not ours
        folders.check_apart(sdir, d.data_dir, "the store folder", "data.data_dir")
    folders.check_replaceable(sdir, "store")
    with store_lock(sdir):
        fingerprint = src.fingerprint()
        status, detail = store_status(sdir, settings, fingerprint)
        if d.rebuild:
            log.info("data.rebuild: building the segment store %s from scratch", sdir)
        elif status in ("current", "no_fingerprint"):
            store = SegmentStore(sdir)
            if status == "no_fingerprint":
                log.warning("segment store %s records no source fingerprint (older ecg-bench): changed source files "
                            "cannot be detected; pass --data.rebuild true to rebuild it", sdir)  # fmt: skip
            log.info("reusing segment store %s (%d segments)", sdir, len(store))
            return store
        elif status == "other_settings":
            raise ConfigError([
                f"data.store_dir: {sdir} holds a segment store built with other settings ({detail}); it is not replaced "
                f"silently: choose another data.store_dir (or another --output_dir), or pass --data.rebuild true to replace it"
            ])  # fmt: skip
        elif status == "source_changed":
            log.info("the source files of segment store %s changed since it was built (%s); rebuilding it", sdir, detail)
        seg_len = int(round(d.segment_seconds * d.target_fs))
        extra = {"source_settings": settings, "source_fingerprint": fingerprint}
        return build_store(src, sdir, d.source.type, d.target_fs, seg_len, extra_meta=extra, workers=d.workers,
                           resume=not d.rebuild)  # fmt: skip


def prepare_data(cfg: RunConfig, kind: str = "run") -> PreparedData:
    """Build (or reuse) the segment store and the conversations, assign folds, and split by patient."""
    d = cfg.data
    source = SOURCES.get(d.source.type)  # unknown names fail before any work
    for name in [] if d.hf_dataset else mapped_names(d):
        MAPPED.get(name)
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


def source_settings(cfg: RunConfig, source: Any = None) -> dict[str, Any]:
    """The settings a store depends on; a store built with other settings is rebuilt, not reused.

    ``source`` (a Source) adds its own ``settings()`` under "reader", JSON-normalised so that the
    value compares equal to the one read back from meta.json.
    """
    d = cfg.data
    # The keys stores have recorded since before sources had options (num_patients / records_per_patient were
    # data fields then, saved with their defaults for every source), so an existing store still matches.
    settings = {"source": d.source.type, "data_dir": _abs(d.data_dir),  # the same folder however it was spelled
                "num_patients": getattr(d.source, "num_patients", 120),
                "records_per_patient": getattr(d.source, "records_per_patient", 2),
                "target_fs": d.target_fs, "segment_seconds": d.segment_seconds, "seed": d.seed}  # fmt: skip
    if source is not None:
        settings["reader"] = json.loads(json.dumps(source.settings()))
    return settings


def _abs(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


# ------------------------------------------------------------------ paths inside a checkpoint

PATH_FIELDS = ("output_dir", "data.data_dir", "data.store_dir", "data.mapped_dir", "data.source.snomed_mapping",
               "data.source.translation_cache", "data.export_hf", "model.elm.tokenizer", "model.encoder.tokenizer",
               "model.encoder.weights", "eval.metrics[meteor].nltk_data", "train.resume_from")  # fmt: skip
"""Config fields that are file or folder paths: saved absolute in a checkpoint, resolved against it when relative
(an option of a component the config does not choose is skipped; ``[type]`` picks list items of that type)."""
NAME_OR_PATH_FIELDS = ("data.hf_dataset", "data.source.translate_model", "model.llm", "eval.metrics[bertscore].model")
"""Fields that are a path or a name (hub id, short name): treated as a path only where that path exists."""


def _owners(cfg: Any, dotted: str) -> list[tuple[Any, str]]:
    """(object, attribute) pairs that ``dotted`` names in ``cfg``: none when a component lacks the option."""
    nodes = [cfg]
    *parents, leaf = dotted.split(".")
    for part in parents:
        name, _, typ = part.partition("[")
        nxt = []
        for n in nodes:
            v = getattr(n, name, None)
            if typ:
                nxt += [x for x in (v or []) if getattr(x, "type", None) == typ.rstrip("]")]
            elif v is not None:
                nxt.append(v)
        nodes = nxt
    return [(n, leaf) for n in nodes if hasattr(n, leaf)]


def _get(cfg: Any, dotted: str) -> Any:
    owners = _owners(cfg, dotted)
    return getattr(*owners[0]) if owners else None


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy of ``cfg`` whose relative paths are absolute (the config saved in a checkpoint)."""
    out = copy.deepcopy(cfg)
    for f in PATH_FIELDS + NAME_OR_PATH_FIELDS:
        for obj, attr in _owners(out, f):
            v = getattr(obj, attr)
            if v and not Path(v).expanduser().is_absolute() and (f in PATH_FIELDS or Path(v).exists()):
                setattr(obj, attr, _abs(v))
    return out


def evaluation_defaults(trained: RunConfig, checkpoint: str | Path) -> dict[str, Any]:
    """Overrides for evaluating ``checkpoint`` (whose config is ``trained``): relative paths resolved against
    the checkpoint, never the current folder; a new output folder ``<checkpoint>/eval-<time>``; no HF export;
    the checkpoint's own copies of the ECG-Byte tokenizer and Signal2Vec vectors."""
    ck = Path(checkpoint)
    over: dict[str, Any] = {}
    for f in PATH_FIELDS + NAME_OR_PATH_FIELDS:
        v = _get(trained, f)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute() and (f in PATH_FIELDS or (ck / v).exists()):
            if "[" in f:  # an option inside a list (eval.metrics): resolved in the trained config itself
                for obj, attr in _owners(trained, f):
                    setattr(obj, attr, _abs(str(ck / v)))
            else:
                over[f] = _abs(str(ck / v))
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
    out = ck / f"eval-{stamp}"
    while out.exists():
        n += 1
        out = ck / f"eval-{stamp}-{n}"
    over["output_dir"] = str(out)
    over["data.export_hf"] = ""
    over["data.store_dir"] = ""  # decided by evaluation_store once the config is complete
    for name, field in CHECKPOINT_FILES:
        if (ck / name).exists() and _owners(trained, field):
            over[field] = str(ck / name)
    return over


def evaluation_store(cfg: RunConfig, trained: RunConfig, checkpoint: str | Path) -> str:
    """The store an evaluation reads: the training run's (the checkpoint's config names it) when it exists and
    fits, used read-only; else a new one inside the evaluation folder. Nothing is built where the checkpoint points."""
    ck = Path(checkpoint)
    named = Path(trained.data.store_dir).expanduser() if trained.data.store_dir else None
    run_dir = Path(trained.output_dir).expanduser()
    trained_store = named or (run_dir if run_dir.is_absolute() else ck / run_dir) / "store"
    if not trained_store.is_absolute():
        trained_store = ck / trained_store
    src = SOURCES.get(cfg.data.source.type)(cfg.data)
    status, detail = store_status(trained_store, source_settings(cfg, src), src.fingerprint())
    if status in ("current", "no_fingerprint"):
        return str(trained_store)
    own = Path(cfg.output_dir) / "store"
    why = {"missing": "not found"}.get(status, f"{status.replace('_', ' ')}: {detail}")
    log.info("the training run's store %s cannot be used (%s); building one for this evaluation in %s", trained_store, why, own)
    return str(own)


def training_data_record(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    """What a checkpoint was trained on (``training_data.json``): fold, folds digest, hashed patient ids."""
    patients = sorted({_patient_hash(it["patient_id"]) for it in data.train})
    return {"split": cfg.data.split, "fold": cfg.data.fold, "num_folds": cfg.data.num_folds, "seed": cfg.data.seed,
            "folds_sha256": hashlib.sha256(data.folds_file.read_bytes()).hexdigest(),
            "num_items": len(data.train), "patients_sha256_16": patients}  # fmt: skip


def _patient_hash(pid: Any) -> str:
    return hashlib.sha256(str(pid).encode()).hexdigest()[:16]


def check_not_trained_on(checkpoint: str | Path, test: list[dict], cfg: RunConfig) -> None:
    """Refuse to evaluate ``checkpoint`` on items whose patients it was trained on, naming the folds."""
    f = Path(checkpoint) / TRAINING_DATA_FILE
    if not f.is_file():
        log.warning("%s has no %s (older ecg-bench): cannot check that the evaluation patients were not in its training "
                    "data", checkpoint, TRAINING_DATA_FILE)  # fmt: skip
        return
    try:
        rec = json.loads(f.read_text())
        trained = set(rec["patients_sha256_16"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{f}: not a training-data record ({e}); expected JSON with patients_sha256_16") from None
    test_patients = {_patient_hash(it["patient_id"]) for it in test}
    overlap = len(test_patients & trained)
    if overlap and rec.get("split") == "official" and cfg.data.split == "official":
        log.warning("%d of the %d test patients of the official split were in the training data of %s: the release's "
                    "split shares them (see official_split.json); scored as released",
                    overlap, len(test_patients), checkpoint)  # fmt: skip
        return
    if overlap:
        raise DataError(
            f"{checkpoint} was trained on fold {rec.get('fold')} of {rec.get('num_folds')} (data seed {rec.get('seed')}); "
            f"{overlap} of the {len(test_patients)} patients of evaluation fold {cfg.data.fold} of {cfg.data.num_folds} "
            f"were in its training data, so the scores would not be held-out: evaluate with --data.fold {rec.get('fold')} "
            f"and the training run's data settings"
        )
    log.info("checked: none of the %d evaluation patients is in the training data of %s (fold %s)",
             len(test_patients), checkpoint, rec.get("fold"))  # fmt: skip


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

    def claim() -> Path:
        out = claim_output(cfg, kind, new_results=True)
        cfg.save(out / "config.json")
        return out

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


def write_results(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)
    log.info("wrote %s", path)


def results_table(results: dict[str, Any]) -> str:
    """Metrics with their patient-clustered 95 % CIs per condition and the majority-answer baseline, then per
    question type and topic."""
    majority = (results.get("baselines") or {}).get("majority")
    return results_tables({**results["conditions"], **({"majority answer": majority} if majority else {})})
