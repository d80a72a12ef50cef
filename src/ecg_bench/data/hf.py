"""Conversations and folds to and from Hugging Face ``datasets`` (``pip install ecg-bench[hf]``).

Export (``export_hf``, ``data.export_hf``) -- a ``DatasetDict`` written with ``save_to_disk``
(Arrow files; nothing is pickled)::

    <dir>/dataset_dict.json, <dir>/fold1/ ... <dir>/fold<k>/     one split per fold: its test items
    <dir>/ecg_bench.json        {"format": "ecg_bench.folds", "version", "num_folds", "seed", "store": {...}}

Fold ``f``'s test set is split ``fold<f+1>`` and its training set every other split, so each item
is stored once. Columns: ``id``, ``segment_ids``, ``record_ids``, ``segment_indices``, ``messages``
(list of {role, content}), ``patient_id``, ``source``, ``meta`` (a JSON string: its keys differ
between datasets), ``fold`` (0-based), and with ``signals=True`` also ``signals`` (float32
[segments, 12, L], the segments themselves). ``ecg_bench.json`` names the store (path, dataset, fs,
segment_len) the segment ids refer to.

Import (``import_hf``, ``data.hf_dataset``): a folder (``load_from_disk``) or a hub id
(``load_dataset``; needs network). Two layouts are read:

- this project's export (above). Items are re-joined to the given store through
  ``(record_id, segment_index)``, so a rebuilt store works; ``fold`` gives the folds.
- the original ECG-Bench's published fold datasets (e.g. ``willxxy/ecg-qa-ptbxl-ecg-250-2500``):
  splits ``fold1_train``, ``fold1_test``, ... ``fold5_test``, columns ``ecg_path`` (a preprocessed
  segment file such as ``.../ptb_xl/preprocessed_2500/records500_06000_06002_hr_0.npy``: record +
  segment index), ``text`` (a JSON string: LLaVA turns, or ``[question_type, question, answers]``
  for ECG-QA) and ``name``. ``column_map`` renames other column names onto these. Each fold there
  is an independent random 70/30 split, not a partition, so the folds come back as explicit
  ``{fold<k>: (train ids, test ids)}``; the same row in several splits is one item.

Rows whose record or segment is not in the store are counted by reason in the returned
``MappingReport`` (never dropped silently); the original's segment index refers to its own
segmentation, so with another segment length some indices fall out of range (``segment_out_of_range``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench import folders
from ecg_bench.data.conversations import ECG_MARKER, validate_item
from ecg_bench.data.mapped.joining import DATASET_HINTS, MappingReport, convert_turns, resolve_ecg_ref, store_dataset
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

FORMAT = "ecg_bench.folds"
FORMAT_VERSION = 1
META_FILE = "ecg_bench.json"
ORIGINAL_COLUMNS = ("ecg_path", "text", "name")
_ORIGINAL_SPLIT = re.compile(r"^fold(\d+)_(train|test)$")


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ConfigError(["Hugging Face export/import needs the 'datasets' package: pip install 'ecg-bench[hf]'"]) from None
    return datasets


@dataclass
class HFImport:
    """What ``import_hf`` read: items, their folds, and the rows it could not join."""

    items: list[dict[str, Any]]
    report: MappingReport
    fold_of_item: list[int] | None = None
    """This project's layout: the fold of every item (a partition)."""
    splits: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    """The original's layout: ``{"fold1": (train ids, test ids), ...}``."""

    @property
    def num_folds(self) -> int:
        return len(set(self.fold_of_item)) if self.fold_of_item is not None else len(self.splits)

    def fold(self, f: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(train, test)`` items of fold ``f`` (0-based)."""
        if self.fold_of_item is not None:
            from ecg_bench.data.splits import split

            return split(self.items, self.fold_of_item, f)
        name = f"fold{f + 1}"
        if name not in self.splits:
            raise ConfigError([f"data.fold {f}: the imported dataset has folds {', '.join(self.splits)} (data.fold is 0-based)"])
        by_id = {it["id"]: it for it in self.items}
        train_ids, test_ids = self.splits[name]
        return [by_id[i] for i in train_ids], [by_id[i] for i in test_ids]


# ------------------------------------------------------------------ export


def _features(datasets, segment_len: int | None):
    v = datasets.Value
    cols = {
        "id": v("string"),
        "segment_ids": [v("int64")],
        "record_ids": [v("string")],
        "segment_indices": [v("int64")],
        "messages": [{"role": v("string"), "content": v("string")}],
        "patient_id": v("string"),
        "source": v("string"),
        "meta": v("string"),
        "fold": v("int64"),
    }
    if segment_len is not None:
        cols["signals"] = datasets.Array3D(shape=(None, 12, segment_len), dtype="float32")
    return datasets.Features(cols)


def _rows(
    items: Sequence[dict[str, Any]], folds: Sequence[int], f: int, store: SegmentStore | None, signals: bool
) -> Iterator[dict]:
    for it, fold in zip(items, folds):
        if fold != f:
            continue
        rows = [store.index[s] for s in it["segment_ids"]] if store is not None else []
        row = {
            "id": it["id"],
            "segment_ids": list(it["segment_ids"]),
            "record_ids": [r["record_id"] for r in rows],
            "segment_indices": [r["segment_index"] for r in rows],
            "messages": it["messages"],
            "patient_id": it["patient_id"],
            "source": it["source"],
            "meta": json.dumps(it["meta"], ensure_ascii=False),
            "fold": int(fold),
        }
        if signals:
            row["signals"] = store.signals(it["segment_ids"])  # type: ignore[union-attr]
        yield row


def export_hf(
    items: Sequence[dict[str, Any]],
    fold_of_item: Sequence[int],
    out_dir: str | Path,
    store: SegmentStore | None = None,
    seed: int | None = None,
    signals: bool = False,
) -> Path:
    """Save ``items`` with their folds as a DatasetDict in ``out_dir`` (replaced atomically); see the module docstring.

    ``store`` (the one the segment ids refer to) adds record ids and segment indices, needed to
    re-join on import; ``signals=True`` also stores the segments (needs ``store``).
    """
    datasets = _datasets()
    if len(items) != len(fold_of_item):
        raise ValueError(f"{len(items)} items but {len(fold_of_item)} fold indices")
    if signals and store is None:
        raise ValueError("export_hf(signals=True) needs the store the segment ids refer to")
    out_dir = Path(out_dir)
    folders.check_replaceable(out_dir, "hf_export")  # only an export ecg-bench made is ever replaced
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    num_folds = max(fold_of_item, default=-1) + 1
    features = _features(datasets, store.segment_len if signals else None)  # type: ignore[union-attr]
    tmp = folders.make_temp(out_dir, "hf_export")
    cache = Path(tempfile.mkdtemp(prefix="ecg_bench_hf_", dir=out_dir.parent))
    try:
        splits = {}
        for f in range(num_folds):
            # a generator keeps memory bounded by a write batch even with signals
            splits[f"fold{f + 1}"] = datasets.Dataset.from_generator(
                _rows, features=features, cache_dir=str(cache), fingerprint=uuid.uuid4().hex,
                gen_kwargs={"items": items, "folds": fold_of_item, "f": f, "store": store, "signals": signals},
            )  # fmt: skip
        datasets.DatasetDict(splits).save_to_disk(str(tmp))
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "num_folds": num_folds, "seed": seed, "num_items": len(items)}
        if store is not None:
            meta["store"] = {"path": str(store.path), "dataset": store_dataset(store), "fs": store.fs,
                             "segment_len": store.segment_len, "num_segments": len(store)}  # fmt: skip
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        folders.replace(tmp, out_dir, "hf_export")
    finally:
        folders.remove(tmp, "hf_export", ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)  # made by mkdtemp just above
    log.info("exported %d items in %d folds to %s%s", len(items), num_folds, out_dir, " (with signals)" if signals else "")
    return out_dir


# ------------------------------------------------------------------ import


def load_hf(source: str | Path):
    """A DatasetDict from a local folder (``load_from_disk``, or a folder of data files) or a hub id."""
    datasets = _datasets()
    path = Path(source)
    if path.exists():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path))  # a local copy of a hub repo (parquet / json files)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)):
        try:
            return datasets.load_dataset(str(source))
        except Exception as e:  # network, authentication, offline mode: one clear message for the CLI
            raise DataError(f"could not load Hugging Face dataset {source!r} from the hub: {type(e).__name__}: {e}") from e
    raise DataError(f"Hugging Face dataset {source!r}: no such folder, and not a hub id of the form owner/name")


def import_hf(source: Any, store: SegmentStore, column_map: dict[str, str] | None = None) -> HFImport:
    """Items and folds of a DatasetDict (or a folder / hub id) in either layout, joined to ``store``."""
    dsd = load_hf(source) if isinstance(source, str | Path) else source
    names = list(dsd.keys())
    if names and all(_ORIGINAL_SPLIT.match(n) for n in names):
        return _import_original(dsd, store, column_map or {})
    if names and all(re.fullmatch(r"fold\d+", n) for n in names):
        return _import_own(dsd, store)
    raise DataError(f"Hugging Face dataset {source!r}: splits {names}; expected fold1..foldK (ecg-bench export) "
                    f"or fold1_train/fold1_test/... (original ECG-Bench)")  # fmt: skip


def _import_own(dsd, store: SegmentStore) -> HFImport:
    report = MappingReport("hf_import", store_dataset(store))
    items, folds = [], []
    for name in sorted(dsd.keys(), key=lambda n: int(n[4:])):
        for row in dsd[name]:
            report.entries += 1
            seg = _rejoin(store, row["record_ids"], row["segment_indices"], report)
            if seg is None:
                continue
            patient = store.index[seg[0]]["patient_id"]
            messages = [dict(m) for m in row["messages"]]
            meta = json.loads(row["meta"])
            item = {"id": row["id"], "segment_ids": seg, "messages": messages, "patient_id": patient,
                    "source": row["source"], "meta": meta}  # fmt: skip
            validate_item(item, len(store))
            items.append(item)
            folds.append(int(row["fold"]))
    report.items = len(items)
    report.log_summary()
    return HFImport(items, report, fold_of_item=folds)


def _rejoin(store: SegmentStore, record_ids: list[str], indices: list[int], report: MappingReport) -> list[int] | None:
    if not record_ids:
        report.skip("no_record_ids")
        return None
    seg = []
    for rid, k in zip(record_ids, indices):
        segs = store.by_record(rid)
        if not segs:
            report.skip("missing_from_store", [rid])
            return None
        if k >= len(segs):
            report.skip("segment_out_of_range", [f"{rid}#{k}"])
            return None
        seg.append(segs[k])
    return seg


def _import_original(dsd, store: SegmentStore, column_map: dict[str, str]) -> HFImport:
    report = MappingReport("hf_import", store_dataset(store))
    items: dict[str, dict[str, Any]] = {}
    splits: dict[str, tuple[list[str], list[str]]] = {}
    folds = sorted({int(_ORIGINAL_SPLIT.match(n).group(1)) for n in dsd.keys()})  # type: ignore[union-attr]
    for k in folds:
        seen: Counter[str] = Counter()  # the n-th copy of an identical row is the same item in every fold
        ids: dict[str, list[str]] = {"train": [], "test": []}
        for part in ("train", "test"):
            for row in dsd.get(f"fold{k}_{part}", []):
                row = {c: row.get(column_map.get(c, c)) for c in ORIGINAL_COLUMNS}
                key = hashlib.sha1(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:16]
                iid = f"{row['name'] or 'hf'}-{key}-{seen[key]}"
                seen[key] += 1
                if iid not in items:
                    report.entries += 1
                    item = _original_item(iid, row, store, report)
                    if item is None:
                        items[iid] = {}
                        continue
                    items[iid] = item
                if items[iid]:
                    ids[part].append(iid)
        splits[f"fold{k}"] = (ids["train"], ids["test"])
    kept = [it for it in items.values() if it]
    report.items = len(kept)
    report.log_summary()
    return HFImport(kept, report, splits=splits)


def _original_item(iid: str, row: dict[str, Any], store: SegmentStore, report: MappingReport) -> dict[str, Any] | None:
    path = str(row["ecg_path"] or "")
    m = re.search(r"_(\d+)(?:\.npy)?$", path)  # <record>_<segment index>.npy
    hint = next((p for p in reversed(Path(path).parts[:-1]) if p.lower() in DATASET_HINTS), "")
    resolved = resolve_ecg_ref(path[: m.start()], hint) if m else None
    if resolved is None:
        report.skip("unresolved_reference", [path])
        return None
    dataset, rid = resolved
    if dataset != report.store_dataset:
        report.skip("other_base_dataset", [f"{dataset}:{rid}"], dataset=dataset)
        return None
    seg = _rejoin(store, [rid], [int(m.group(1))], report)
    if seg is None:
        return None
    try:
        messages = _original_messages(row["text"])
        item = {"id": iid, "segment_ids": seg, "messages": messages, "patient_id": store.index[seg[0]]["patient_id"],
                "source": str(row["name"] or "hf_import"),
                "meta": {"ecg_path": path, "record_id": rid, "segment_index": int(m.group(1)), "dataset": dataset}}  # fmt: skip
        qtype = _original_question_type(row["text"])
        if qtype:
            item["meta"]["question_type"] = qtype  # ECG-QA's, so that evaluation reports per type
        validate_item(item, len(store))
    except DataError as e:
        log.debug("row %s: %s", iid, e)
        report.skip("bad_conversation", [rid])
        return None
    return item


def _original_question_type(text: Any) -> str | None:
    """The question type of an ECG-QA row's ``[type, question, answers]`` text, None for other rows."""
    try:
        text = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return None
    if isinstance(text, list) and len(text) == 3 and isinstance(text[0], str) and text[0]:
        return text[0]
    return None


def _original_messages(text: Any) -> list[dict[str, str]]:
    """``text`` of the original's rows: a JSON string of LLaVA turns, or ECG-QA's [type, question, answers]."""
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except json.JSONDecodeError:
            raise DataError(f"text is not JSON: {text[:80]!r}") from None
    if isinstance(text, list) and len(text) == 3 and all(not isinstance(t, dict) for t in text):
        _, question, answer = text
        answer = " ".join(map(str, answer)) if isinstance(answer, list) else str(answer)  # the original's join
        return [{"role": "user", "content": f"{ECG_MARKER}\n{question}"}, {"role": "assistant", "content": answer}]
    return convert_turns(text)
