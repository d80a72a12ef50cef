"""The conversations of a run: the configured mapped dataset, several mixed into one, or an imported
Hugging Face dataset; then their patient-disjoint folds (``prepare_conversations``).

``data.mix = [a, b, ...]`` runs each mapped dataset over the one segment store of ``data.source``
and concatenates their items (in ``data.mix`` order), optionally capped per dataset by
``data.mix_max_items`` (a seeded random subset, original order kept). Item ids stay unique because
every mapper prefixes its ids with its own name (a repeated id is an error), and folds are made
after mixing, over the patients of all parts, so they stay patient-disjoint across datasets.

Different base datasets: there is one store per run, so a part whose ECGs all come from another
base dataset (e.g. ECG-Instruct-45k, MIMIC-IV-ECG, mixed into a PTB-XL run) yields no items. That
is refused with an error naming the part and what its report counted, rather than mixed in as
nothing. Parts spanning several base datasets (PULSE, GEM) contribute the entries of the store's
dataset; the rest are counted under ``other_base_dataset`` in the mapping report.

Files written by ``prepare_conversations`` into the output folder: ``<mapped>.jsonl`` (the items;
``a+b.jsonl`` for a mix), ``mapping_report.json`` (per mapped dataset: entries read, items made,
skipped entries by reason with their record ids), ``folds.json`` (the fold of every item, or the
imported train/test ids per fold) and, with ``data.export_hf``, the Hugging Face export.
"""

from __future__ import annotations

import dataclasses

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_bench.config import DataConfig
from ecg_bench.data.conversations import save_jsonl
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.joining import MappedItems, MappingReport, store_dataset
from ecg_bench.data.splits import check_fold_splits, check_folds, official_split, patient_folds, split
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)


def mapped_specs(cfg: DataConfig) -> list[Any]:
    """The mapped datasets a run uses, with their options: ``data.mix`` when given, else ``[data.mapped]``."""
    return list(cfg.mix) or [cfg.mapped]


def mapped_names(cfg: DataConfig) -> list[str]:
    """The names of the mapped datasets a run uses: ``data.mix`` when given, else ``[data.mapped]``."""
    names = [m.type for m in mapped_specs(cfg)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError([f"data.mix names {', '.join(repeated)} more than once"])
    if cfg.mix_max_items and len(cfg.mix_max_items) != len(cfg.mix):
        raise ConfigError([f"data.mix_max_items has {len(cfg.mix_max_items)} caps for {len(cfg.mix)} data.mix datasets"])
    return names


def build_items(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """Items of ``data.mapped``, or of the ``data.mix`` datasets mixed; DataError if a part is empty."""
    names = mapped_names(cfg)
    mappers = [MAPPED.get(n) for n in names]  # unknown names fail before any work
    specs = mapped_specs(cfg)
    caps = list(cfg.mix_max_items) or [0] * len(names)
    parts: dict[str, list[dict[str, Any]]] = {}
    reports: list[MappingReport] = []
    for k, (name, mapper) in enumerate(zip(names, mappers)):
        got = mapper(store, dataclasses.replace(cfg, mapped=specs[k]))
        part_reports = getattr(got, "reports", [])
        if not got:
            raise DataError(_empty_message(name, store, part_reports))
        parts[name] = _cap(list(got), caps[k], [cfg.seed, 5, k], name)
        reports.extend(part_reports)
    return mix_items(parts, reports)


def mix_items(parts: dict[str, list[dict[str, Any]]], reports: list[MappingReport] | None = None) -> MappedItems:
    """Concatenate the items of ``parts`` (name -> items) in order; DataError on a repeated item id."""
    items = [it for part in parts.values() for it in part]
    seen: set[str] = set()
    dup = [it["id"] for it in items if it["id"] in seen or seen.add(it["id"])]
    if dup:
        raise DataError(f"mixed datasets {', '.join(parts)} repeat item ids: {', '.join(dup[:10])}")
    if len(parts) > 1:
        log.info("mixed %s", ", ".join(f"{n}: {len(p)} items" for n, p in parts.items()))
    return MappedItems(items, reports or [])


def _cap(items: list[dict[str, Any]], cap: int, seed: list[int], name: str) -> list[dict[str, Any]]:
    if cap <= 0 or len(items) <= cap:
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), cap, replace=False))
    log.info("%s: kept %d of %d items (data.mix_max_items)", name, cap, len(items))
    return [items[i] for i in keep]


def _empty_message(name: str, store: SegmentStore, reports: list[MappingReport]) -> str:
    msg = f"mapped dataset {name} produced no items on the store {store.path} ({store_dataset(store)})"
    for r in reports:
        msg += f"; it read {r.entries} entries, skipped {dict(r.skipped) or 'none'}"
        if r.other_datasets:
            msg += (
                f"; its ECGs are from {', '.join(sorted(r.other_datasets))}: build a store of that dataset "
                f"(data.source) to use it, or mix it only with datasets on the same base dataset"
            )
    return msg


@dataclass
class Conversations:
    """A run's conversations split for its test fold."""

    items: list[dict[str, Any]]
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    folds_file: Path
    report_file: Path
    val: list[dict[str, Any]] = field(default_factory=list)
    """Held-out conversations for the validation loss (data.split official: the release's valid split)."""


def prepare_conversations(store: SegmentStore, cfg: DataConfig, out_dir: str | Path) -> Conversations:
    """Items (mapped, mixed or imported), their checked patient-disjoint folds, the split for
    ``data.fold``, and the files listed in the module docstring."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.hf_dataset:
        if cfg.split == "official":
            raise ConfigError(["data.split official reads a mapped dataset's own release split; an imported data.hf_dataset "
                               "brings its folds (data.hf_folds): use data.split folds"])  # fmt: skip
        return _imported(store, cfg, out_dir)
    items = build_items(store, cfg)
    save_jsonl(items, out_dir / f"{'+'.join(mapped_names(cfg))}.jsonl")
    report_file = write_reports(items.reports, out_dir / "mapping_report.json")
    if cfg.split == "official":
        return _official(list(items), cfg, out_dir, report_file)
    folds = patient_folds(items, cfg.num_folds, cfg.seed, stratify=cfg.stratify_folds)
    return _finish(store, cfg, out_dir, list(items), folds, report_file)


def write_reports(reports: list[MappingReport], path: Path) -> Path:
    path.write_text(json.dumps({"datasets": [r.to_dict() for r in reports]}, indent=2) + "\n")
    return path


def _finish(
    store: SegmentStore, cfg: DataConfig, out_dir: Path, items: list[dict[str, Any]], folds: list[int], report_file: Path
) -> Conversations:
    check_folds(items, folds)  # every fold, not only the one used
    train, test = split(items, folds, cfg.fold)
    folds_file = out_dir / "folds.json"
    fold_of_item = dict(zip((it["id"] for it in items), folds))
    num_folds = max(folds) + 1
    folds_file.write_text(json.dumps({"num_folds": num_folds, "seed": cfg.seed, "stratified": cfg.stratify_folds,
                                      "patient_disjoint": True, "fold_of_item": fold_of_item}))  # fmt: skip
    if cfg.export_hf:
        from ecg_bench.data.hf import export_hf

        export_hf(items, folds, cfg.export_hf, store=store, seed=cfg.seed, signals=cfg.export_hf_signals)
    return Conversations(items, train, test, folds_file, report_file)


def _official(items: list[dict[str, Any]], cfg: DataConfig, out_dir: Path, report_file: Path) -> Conversations:
    """The release's own split (``data.split official``): train / valid / test as the dataset ships them, their
    patient overlaps reported in ``official_split.json`` (and logged), never silently changed."""
    if cfg.export_hf:
        raise ConfigError(["data.export_hf writes patient-disjoint folds; with data.split official there are none: "
                           "export with data.split folds"])  # fmt: skip
    parts, report = official_split(items)
    for name in ("train", "test"):
        if not parts[name]:
            raise DataError(f"data.split official: the {name} split has no items joined to the store (read splits "
                            f"{getattr(cfg.mapped, 'qa_splits', [])}; items per split {report['items']}); see {report_file}")  # fmt: skip
    for pair, o in report["overlap"].items():
        if o["patients"]:
            log.warning("official split: %s share %d patient(s) (%d items of the second); the release's split is not "
                        "patient-disjoint there (kept as released, see official_split.json)",
                        pair, o["patients"], o["items"])  # fmt: skip
    log.info("official split: %s items, %s patients; patient-disjoint: %s", report["items"], report["patients"],
             report["patient_disjoint"])  # fmt: skip
    folds_file = out_dir / "official_split.json"
    ids = {s: [it["id"] for it in v] for s, v in parts.items()}
    folds_file.write_text(json.dumps({"split": "official", **report, "item_ids": ids}, indent=1) + "\n")
    return Conversations(items, parts["train"], parts["test"], folds_file, report_file, val=parts["valid"])


def _imported(store: SegmentStore, cfg: DataConfig, out_dir: Path) -> Conversations:
    from ecg_bench.data.hf import import_hf

    got = import_hf(cfg.hf_dataset, store)
    report_file = write_reports([got.report], out_dir / "mapping_report.json")
    if not got.items:
        raise DataError(f"{cfg.hf_dataset}: no row joined the store {store.path}; skipped {dict(got.report.skipped)}")
    save_jsonl(got.items, out_dir / "hf_import.jsonl")
    if cfg.hf_folds == "recompute":
        folds = patient_folds(got.items, cfg.num_folds, cfg.seed, stratify=cfg.stratify_folds)
        return _finish(store, cfg, out_dir, got.items, folds, report_file)
    if got.fold_of_item is not None:
        return _finish(store, cfg, out_dir, got.items, got.fold_of_item, report_file)
    if cfg.export_hf:
        raise ConfigError(
            ["data.export_hf needs partition folds; the imported dataset's folds overlap: set data.hf_folds recompute"]
        )
    splits = {name: got.fold(int(name[4:]) - 1) for name in got.splits}
    try:
        check_fold_splits(splits)
    except DataError as e:
        raise DataError(f"{cfg.hf_dataset}: {e} (by the store's patient ids); set data.hf_folds recompute") from None
    train, test = got.fold(cfg.fold)
    folds_file = out_dir / "folds.json"
    ids = {name: {"train": [it["id"] for it in tr], "test": [it["id"] for it in te]} for name, (tr, te) in splits.items()}
    folds_file.write_text(
        json.dumps({"num_folds": len(splits), "source": cfg.hf_dataset, "patient_disjoint": True, "splits": ids})
    )
    return Conversations(got.items, train, test, folds_file, report_file)
