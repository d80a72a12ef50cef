"""The whole path, as functions the CLI commands call:

records -> segment store -> conversations -> patient-disjoint folds -> ELM -> training -> evaluation
-> ``results.json`` and a printed table.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_bench.config import RunConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mix import mapped_names, prepare_conversations
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.store import SegmentStore, build_store
from ecg_bench.errors import ConfigError, UnknownNameError
from ecg_bench.evaluation.evaluator import evaluate
from ecg_bench.evaluation.statistics import format_table
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.elm import build_elm
from ecg_bench.representations.base import REPRESENTATIONS
from ecg_bench.training.checkpoint import check_run_inputs, load_checkpoint
from ecg_bench.training.trainer import Trainer, resolve_device, summarize

log = get_logger(__name__)


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


def store_dir(cfg: RunConfig) -> Path:
    return Path(cfg.data.store_dir or Path(cfg.output_dir) / "store")


def prepare_data(cfg: RunConfig) -> PreparedData:
    """Build (or reuse) the segment store and the conversations, assign folds, and split by patient."""
    d = cfg.data
    source = SOURCES.get(d.source)  # unknown names fail before any work
    for name in [] if d.hf_dataset else mapped_names(d):
        MAPPED.get(name)
    sdir = store_dir(cfg)
    seg_len = int(round(d.segment_seconds * d.target_fs))
    src = source(d)
    settings = source_settings(cfg, src)
    store = SegmentStore(sdir) if SegmentStore.exists(sdir) else None
    if store is not None and store.meta.get("source_settings") == settings:
        log.info("reusing segment store %s (%d segments)", sdir, len(store))
    else:
        extra = {"source_settings": settings}
        store = build_store(src, sdir, d.source, d.target_fs, seg_len, extra_meta=extra, workers=d.workers)
    # mapped / mixed / imported conversations, mapping_report.json, checked folds (folds.json), HF export
    conv = prepare_conversations(store, d, cfg.output_dir)
    train, test, folds_file = conv.train, conv.test, conv.folds_file
    rng = np.random.default_rng(d.seed)
    if d.max_train_items and len(train) > d.max_train_items:
        train = [train[i] for i in sorted(rng.choice(len(train), d.max_train_items, replace=False))]
    if d.max_eval_items and len(test) > d.max_eval_items:
        test = [test[i] for i in sorted(rng.choice(len(test), d.max_eval_items, replace=False))]
    log.info("fold %d/%d: %d train and %d test conversations, patient-disjoint", d.fold, d.num_folds, len(train), len(test))
    return PreparedData(store, train, test, folds_file)


def source_settings(cfg: RunConfig, source: Any = None) -> dict[str, Any]:
    """The settings a store depends on; a store built with other settings is rebuilt, not reused.

    ``source`` (a Source) adds its own ``settings()`` under "reader", JSON-normalised so that the
    value compares equal to the one read back from meta.json.
    """
    d = cfg.data
    keys = ("source", "data_dir", "num_patients", "records_per_patient", "target_fs", "segment_seconds", "seed")
    settings = {k: getattr(d, k) for k in keys}
    if source is not None:
        settings["reader"] = json.loads(json.dumps(source.settings()))
    return settings


def _representation(cfg: RunConfig):
    return REPRESENTATIONS.get(cfg.model.representation)()


def check_names(cfg: RunConfig) -> None:
    """Look every registry name of the config up before any work; one error lists all unknown names."""
    from ecg_bench.evaluation.metrics import METRICS
    from ecg_bench.models.elm import ELMS
    from ecg_bench.models.encoders import ENCODERS

    lookups = [(SOURCES, cfg.data.source), (MAPPED, cfg.data.mapped), (REPRESENTATIONS, cfg.model.representation),
               (ELMS, cfg.model.elm), (ENCODERS, cfg.model.encoder), *((METRICS, m) for m in cfg.eval.metrics),
               *((MAPPED, m) for m in cfg.data.mix)]  # fmt: skip
    problems = []
    for registry, name in lookups:
        try:
            registry.get(name)
        except UnknownNameError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(problems)


def run(cfg: RunConfig, train: bool = True) -> dict[str, Any]:
    """Train (unless ``train`` is False and a checkpoint is given) and evaluate; write results.json."""
    cfg.validate()
    check_names(cfg)
    check_run_inputs(cfg, train)  # a corrupt .gguf or checkpoint file is refused before the data is built
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    seed_everything(cfg.train.seed)
    t0 = time.time()
    data = prepare_data(cfg)
    rep = _representation(cfg)
    in_leads, seq_len = rep.shape(data.store.segment_len)
    elm, formatter = build_elm(cfg.model, seq_len=seq_len, in_leads=in_leads, fs=data.store.fs)
    train_ds = ConversationDataset(data.train, data.store, rep)
    test_ds = ConversationDataset(data.test, data.store, rep)
    training: dict[str, Any] = {}
    if train:
        trainer = Trainer(elm, formatter, train_ds, cfg, out / "checkpoints")
        training = summarize(trainer.train())
        device = trainer.device
    else:
        device = resolve_device(cfg.train.device)
        elm.to(device)
        if cfg.train.resume_from:
            load_checkpoint(cfg.train.resume_from, elm)
    results = evaluate(elm, formatter, test_ds, cfg.eval, device)
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
        },
        "seconds": round(time.time() - t0, 1),
        **results,
    }
    write_results(results, out / "results.json")
    return results


def write_results(results: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)
    log.info("wrote %s", path)


def results_table(results: dict[str, Any]) -> str:
    rows = {c: r["metrics"] for c, r in results["conditions"].items()}
    metrics = list(next(iter(rows.values())).keys()) if rows else []
    return format_table(rows, metrics)
