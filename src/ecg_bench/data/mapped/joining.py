"""What every mapped dataset shares: finding its download, naming the ECG an entry refers to,
joining it to store segments, converting LLaVA-style turns, and reporting what could not be joined.

ECG references. The published conversation datasets name their ECG by a path of the original
download (or of an image rendered from it); ``resolve_ecg_ref`` turns such a path into
``(base dataset, record_id)`` with the record-id conventions of the sources:

=================  ===========================================================  =====================
base dataset       reference forms seen (any prefix folder is allowed)           record_id
=================  ===========================================================  =====================
``ptbxl``          ``records500/06000/06002_hr``, ``ptb-xl/.../06002_hr-0.png``  ``"6002"`` (ecg_id)
``mimic_iv_ecg``   ``files/p1000/p10000032/s40689238/40689238``                  ``"40689238"`` (study)
``code15``         ``code15_v4/1169160-0.png``, ``code15/exams/1169160``         ``"1169160"`` (exam)
``cpsc2018``       ``.../A1980``, ``A1980-0.png``                                ``"A1980"``
``csn``            ``.../JS20001``                                               ``"JS20001"``
=================  ===========================================================  =====================

The original ECG-Bench's own flattened names (``records500_06000_06002_hr``,
``files_p1000_p10000032_s40689238_40689238``) resolve too.

Segments. A record is cut into several segments; ``data.mapped_segments`` says which the
conversation is joined to: ``all`` (one item per segment, as the original ECG-Bench does) or
``first`` (one item, the record's first segment). A conversation about k ECGs (ECG-QA comparison
questions) gets k ``<ecg>`` markers; with ``all`` it is repeated for segment positions
0 .. min(segments of each record) - 1, pairing the same position of each record.

Reporting. Nothing is dropped silently: an entry that yields no item is counted in the
``MappingReport`` under a reason with the record ids concerned:

- ``filtered``: not asked for (another question type, an ECGBench subset without base-dataset ECGs);
- ``bad_entry``: not an object, or a field the mapper needs is missing or of the wrong type (no
  ``question`` / ``answer`` / ``sample_id``, an ``ecg_id`` that is not an integer, ...);
- ``bad_conversation``: turns that are not a user/assistant conversation;
- ``unresolved_reference``: an ECG reference of no known form;
- ``other_base_dataset``: an ECG of another base dataset than the store's;
- ``missing_from_store``: the ECG's record is not in the store;
- ``duplicate_entry``: an entry that would give the same item ids as an earlier one.

Why an entry was ``bad_entry`` / ``bad_conversation`` is counted too (``details``: message ->
count). The mapper returns a ``MappedItems`` list that carries its report; the data command writes it
to ``<output_dir>/mapping_report.json``, and the log shows, from the same report when the mapper is
done, every reason with its count, its first ids and its details.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config import DataConfig
from ecg_bench.data.conversations import ECG_MARKER, validate_item
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.jsonl import load_jsonl
from ecg_bench.limits import load_json_file
from ecg_bench.logging_utils import get_logger, progress

log = get_logger(__name__)

BASE_DATASETS = ("ptbxl", "mimic_iv_ecg", "code15", "cpsc2018", "csn")
SEGMENT_POLICIES = ("all", "first")

# Leading folder of a reference -> base dataset (names used by PULSE, GEM and the original ECG-Bench).
DATASET_HINTS = {
    "ptb-xl": "ptbxl", "ptbxl": "ptbxl", "ptb_xl": "ptbxl", "ecg_ptbxl_benchmarking": "ptbxl", "ptb": "ptbxl",
    "mimic_v4": "mimic_iv_ecg", "mimic": "mimic_iv_ecg", "mimic-iv": "mimic_iv_ecg", "mimic_iv": "mimic_iv_ecg",
    "mimic-iv-ecg": "mimic_iv_ecg", "code15_v4": "code15", "code15": "code15", "code-15": "code15",
    "cpsc": "cpsc2018", "cpsc2018": "cpsc2018", "cpsc_2018": "cpsc2018", "csn": "csn",
    "champan-shaoxing": "csn", "chapman-shaoxing": "csn", "georgia": "g12ec", "g12": "g12ec", "g12ec": "g12ec",
}  # fmt: skip
# Skip reasons of the mapping report (see the module docstring).
FILTERED, BAD_ENTRY, BAD_CONVERSATION, DUPLICATE = "filtered", "bad_entry", "bad_conversation", "duplicate_entry"
UNRESOLVED, OTHER_DATASET, MISSING = "unresolved_reference", "other_base_dataset", "missing_from_store"
MAX_DETAILS = 20
"""Distinct detail messages kept per reason (the rest are counted under ``OTHER_DETAILS``)."""
OTHER_DETAILS = "(other messages)"
_PTBXL = re.compile(r"(?:^|[/_])(\d{5})_(?:hr|lr)(?:$|[-_./])")
_MIMIC_STUDY = re.compile(r"(?:^|[/_])s(\d{8})(?:$|[/_])")
_MIMIC_PATIENT = re.compile(r"(?:^|[/_])p\d{8}(?:$|[/_])")
_CPSC = re.compile(r"^(A\d{4}|Q\d{4})$")
_CSN = re.compile(r"^(JS\d{5})$")


def _stem(ref: str) -> str:
    """Last path component without extension and without the image index suffix ``-0``."""
    name = ref.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"\.(png|jpg|jpeg|npy|hea|mat|dat|json)$", "", name, flags=re.IGNORECASE)
    return re.sub(r"-\d+$", "", name)


def _folder_hint(folder: str) -> str | None:
    """The base dataset a folder name stands for: ``ptb-xl``, ``mimic_v4``, or a PULSE test-image folder
    named after its test set (``ptb_test_v4``, ``cpsc_test_v4``, ``g12_test_v4``)."""
    name = folder.lower()
    return DATASET_HINTS.get(name) or DATASET_HINTS.get(re.sub(r"[-_]test(?:[-_].*)?$", "", name))


def resolve_ecg_ref(ref: str, hint: str = "") -> tuple[str, str] | None:
    """``(base dataset, record_id)`` named by the path ``ref``, or None if the form is unknown.

    ``hint`` is a base dataset name (or a name in ``DATASET_HINTS``) used when the path alone is
    ambiguous (a bare CODE-15% exam id).
    """
    ref = str(ref).strip().replace("\\", "/")
    if not ref:
        return None
    parts = [p for p in ref.split("/") if p]
    prefix = next((h for p in parts[:-1] if (h := _folder_hint(p))), None)
    hint = DATASET_HINTS.get(hint.lower(), hint) if hint else ""
    stem = _stem(ref)
    if m := _PTBXL.search(ref):
        return "ptbxl", str(int(m.group(1)))
    if _MIMIC_PATIENT.search(ref) and (m := _MIMIC_STUDY.search(ref)):
        return "mimic_iv_ecg", m.group(1)
    if m := _CPSC.match(stem):
        return "cpsc2018", m.group(1)
    if m := _CSN.match(stem):
        return "csn", m.group(1)
    dataset = prefix or hint or ("code15" if "code15" in ref.lower() or "code-15" in ref.lower() else "")
    if dataset == "code15" and stem.split("_")[0].isdigit():
        return "code15", str(int(stem.split("_")[0]))
    if dataset == "mimic_iv_ecg" and stem.isdigit() and len(stem) == 8:
        return "mimic_iv_ecg", stem
    if dataset == "ptbxl" and stem.isdigit():
        return "ptbxl", str(int(stem))
    if dataset and dataset not in BASE_DATASETS:  # e.g. georgia (G12EC): a dataset without a source here
        return dataset, stem
    return None


@dataclass
class MappingReport:
    """What a mapper read, what it made, and every entry it could not join, by reason."""

    name: str
    store_dataset: str
    entries: int = 0
    items: int = 0
    skipped: Counter = field(default_factory=Counter)
    record_ids: dict[str, set[str]] = field(default_factory=dict)
    other_datasets: Counter = field(default_factory=Counter)
    details: dict[str, Counter] = field(default_factory=dict)
    """reason -> why, in words -> count (``bad_entry``, ``bad_conversation``, ...)."""

    def skip(self, reason: str, record_ids: Iterable[str] = (), dataset: str = "", detail: str = "") -> None:
        """Count one entry that produced no item, remembering the record ids concerned and why (``detail``)."""
        self.skipped[reason] += 1
        self.record_ids.setdefault(reason, set()).update(record_ids)
        if dataset:
            self.other_datasets[dataset] += 1
        if detail:
            why = self.details.setdefault(reason, Counter())
            why[detail if detail in why or len(why) < MAX_DETAILS else OTHER_DETAILS] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "mapped": self.name,
            "store_dataset": self.store_dataset,
            "entries": self.entries,
            "items": self.items,
            "skipped": dict(sorted(self.skipped.items())),
            "other_base_datasets": dict(sorted(self.other_datasets.items())),
            "record_ids": {k: sorted(v) for k, v in sorted(self.record_ids.items())},
            "details": {k: dict(v.most_common()) for k, v in sorted(self.details.items())},
        }

    def log_summary(self) -> None:
        """One info line with every reason's count, then one line per reason: its first ids and why.

        ``filtered`` (entries not asked for) is logged at INFO, every other reason at WARNING.
        """
        log.info("%s: %d entries -> %d items on the %s store; skipped %s", self.name, self.entries, self.items,
                 self.store_dataset, dict(sorted(self.skipped.items())) or "none")  # fmt: skip
        for reason, n in sorted(self.skipped.items()):
            ids = self.record_ids.get(reason) or set()
            line = f"{self.name}: {n} entries skipped ({reason})"
            if ids:
                shown = ", ".join(sorted(ids)[:10]) + (" ..." if len(ids) > 10 else "")
                line += f", {len(ids)} distinct {'records' if reason != BAD_ENTRY else 'places'}, e.g. {shown}"
            if self.details.get(reason):
                line += "; why: " + "; ".join(f"{c} x {msg}" for msg, c in self.details[reason].most_common())
            log.log(logging.INFO if reason == FILTERED else logging.WARNING, "%s", line)
        if self.other_datasets:
            log.warning("%s: entries on other base datasets (need their own store): %s", self.name, dict(self.other_datasets))

    def finish(self, items: list[dict[str, Any]]) -> "MappedItems":
        """Record how many items were made, log the summary, and return the items carrying this report.

        Call it once every entry has been counted: the log is written from the report as it is then,
        and is what mapping_report.json says.
        """
        self.items = len(items)
        self.log_summary()
        return MappedItems(items, [self])

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


class MappedItems(list):
    r"""The items a mapper made (a plain list) plus the ``MappingReport``\ s of what was left out
    (one per mapped dataset; a mix carries those of all its parts)."""

    def __init__(self, items: Iterable[dict[str, Any]], reports: Iterable[MappingReport] = ()):
        super().__init__(items)
        self.reports = list(reports)


def store_dataset(store: SegmentStore) -> str:
    return str(store.meta.get("dataset", "?"))


def check_segment_policy(cfg: DataConfig) -> str:
    if cfg.mapped_segments not in SEGMENT_POLICIES:
        raise ConfigError([f"data.mapped_segments: {cfg.mapped_segments!r}; valid: {', '.join(SEGMENT_POLICIES)}"])
    return cfg.mapped_segments


def segment_groups(store: SegmentStore, record_ids: Sequence[str], policy: str) -> list[list[int]]:
    """Segment-id lists to join a conversation about ``record_ids`` to (see the module docstring).

    Empty when a record is not in the store.
    """
    per_record = [store.by_record(r) for r in record_ids]
    if not per_record or any(not segs for segs in per_record):
        return []
    n = 1 if policy == "first" else min(len(segs) for segs in per_record)
    return [[segs[k] for segs in per_record] for k in range(n)]


def find_input(cfg: DataConfig, name: str, candidates: Sequence[str]) -> Path:
    """The download of mapped dataset ``name``: ``data.mapped_dir`` itself if it is a file, else the
    first of ``candidates`` (paths relative to it) that exists."""
    if not cfg.mapped_dir:
        raise ConfigError([f"data.mapped_dir is empty; mapped dataset {name!r} needs its download ({', '.join(candidates)})"])
    root = Path(cfg.mapped_dir)
    if root.is_file():
        return root
    for c in candidates:
        if (root / c).exists():
            return root / c
    raise DataError(f"{name}: none of {', '.join(candidates)} found in data.mapped_dir {root}")


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; a syntax error raises DataError naming the file, line and column."""
    path = Path(path)
    return load_json_file(path, "JSON document")  # size, nesting and values bounded; errors name the file


def load_entries(path: Path) -> list[dict[str, Any]]:
    """Entries of a JSON list, a JSON object with a ``data`` list, JSON Lines, or Parquet file(s)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl", ".parquet"))
        if not files:
            raise DataError(f"{path}: no .json, .jsonl or .parquet files inside")
        return [e for f in files for e in load_entries(f)]
    if path.suffix == ".parquet":
        import pandas as pd

        subset = path.parent.name  # HF layout <config>/<split>-00000-of-00001.parquet
        rows = pd.read_parquet(path).to_dict(orient="records")
        return [{"name": subset, **_plain(r)} for r in rows]
    if path.suffix == ".jsonl":
        return load_jsonl(path)
    data = load_json(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    return data


def _plain(obj: Any) -> Any:
    """numpy arrays / scalars from Parquet -> lists / Python scalars."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
          "system": "system"}  # fmt: skip
_TAG_RE = re.compile(r"<\s*(?:ecg|image)\s*>\s*\n?", re.IGNORECASE)
_IMAGE_WORD_RE = re.compile(r"\b(image)\b", re.IGNORECASE)
_LEADING_PREFIX_RE = re.compile(r"^\s*(?:[:：]\s*|(?:user|assistant|human|gpt|model|system)\s*:\s*)+", re.IGNORECASE)


def clean_text(text: str) -> str:
    """Drop ``<image>`` / ``<ecg>`` tags and role prefixes; say "signal" for "image" (as the original
    ECG-Bench does: the model is shown the signal, not a picture of it)."""
    text = _TAG_RE.sub("", text)
    text = _IMAGE_WORD_RE.sub(lambda m: "Signal" if m.group(1)[0].isupper() else "signal", text)
    return _LEADING_PREFIX_RE.sub("", text).strip()


def convert_turns(turns: Any, n_ecgs: int = 1) -> list[dict[str, str]]:
    """LLaVA/ShareGPT turns (``{"from": "human"|"gpt", "value"}`` or ``{"role", "content"}``) ->
    ``messages`` with ``n_ecgs`` ``<ecg>`` markers opening the first user message.

    Raises DataError on a malformed conversation (unknown role, no user or assistant turn).
    """
    if not isinstance(turns, list) or not turns:
        raise DataError(f"conversations must be a non-empty list, got {type(turns).__name__}")
    messages: list[dict[str, str]] = []
    for j, t in enumerate(turns):
        if not isinstance(t, dict):
            raise DataError(f"turn {j} is {type(t).__name__}, expected a dict")
        role_key, text_key = ("role", "content") if "role" in t else ("from", "value")
        role = _ROLES.get(str(t.get(role_key, "")).strip().lower())
        if role is None:
            raise DataError(f"turn {j}: unknown speaker {t.get(role_key)!r}; expected human/gpt/user/assistant/system")
        value = t.get(text_key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "".join(value)  # PULSE ecgqa-test stores lists of strings
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        elif not isinstance(value, str):
            raise DataError(f"turn {j}: '{text_key}' is {json_type(value)}, expected a string")
        messages.append({"role": role, "content": clean_text(value)})
    first_user = next((m for m in messages if m["role"] == "user"), None)
    if first_user is None or messages[-1]["role"] != "assistant":
        raise DataError("conversation needs a user turn and must end with an assistant turn")
    first_user["content"] = "\n".join([ECG_MARKER] * n_ecgs + ([first_user["content"]] if first_user["content"] else []))
    return messages


def conversation_turns(entry: dict[str, Any]) -> Any:
    """An entry's turns: ``conversations`` (LLaVA) or ``conversation`` (PULSE's published test files)."""
    return entry["conversations"] if "conversations" in entry else entry.get("conversation")


def map_llava_entries(
    store: SegmentStore,
    cfg: DataConfig,
    name: str,
    entries: Sequence[Any],
    ref_of: Callable[[dict[str, Any]], tuple[str, str]],
    wanted: Callable[[dict[str, Any]], bool] | None = None,
) -> MappedItems:
    """Items of LLaVA-style ``entries`` (``conversations`` + an ECG reference) joined to ``store``.

    ``ref_of(entry)`` gives ``(reference path, base-dataset hint)``; an entry for which ``wanted``
    returns False is counted as ``filtered``. Entry ``i`` joined to segment group ``k`` becomes item
    ``f"{name}-{i:06d}-{k}"``; the entry's own ``id`` and ``name`` go to meta. Every entry is either
    made into items or counted in the report under a reason (see the module docstring).
    """
    policy = check_segment_policy(cfg)
    report = MappingReport(name, store_dataset(store), entries=len(entries))
    items: list[dict[str, Any]] = []
    for i, entry in enumerate(progress(entries, desc=f"mapping {name}", unit="entry")):
        if not isinstance(entry, dict):
            report.skip(BAD_ENTRY, [f"entry {i}"], detail=f"entry is {json_type(entry)}, expected a JSON object")
            continue
        if wanted is not None and not wanted(entry):
            report.skip(FILTERED)
            continue
        ref, hint = ref_of(entry)
        resolved = resolve_ecg_ref(ref, hint) if ref else None
        if resolved is None:
            report.skip(UNRESOLVED, [str(ref)])
            continue
        dataset, rid = resolved
        if dataset != report.store_dataset:
            report.skip(OTHER_DATASET, [f"{dataset}:{rid}"], dataset=dataset)
            continue
        groups = segment_groups(store, [rid], policy)
        if not groups:
            report.skip(MISSING, [rid])
            continue
        try:
            made = [_llava_item(store, name, i, k, seg, entry, dataset) for k, seg in enumerate(groups)]
        except DataError as e:
            report.skip(BAD_CONVERSATION, [rid], detail=str(e))
            continue
        items.extend(made)
    return report.finish(items)


def json_type(value: Any) -> str:
    """The JSON type of ``value`` in words (``"an object"``, ``"a list"``, ``"null"``, ...), for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _llava_item(
    store: SegmentStore, name: str, i: int, k: int, seg: list[int], entry: dict[str, Any], dataset: str
) -> dict[str, Any]:
    row = store.index[seg[0]]
    turns = conversation_turns(entry)
    if turns is None:
        raise DataError("no 'conversations' (or 'conversation') field")
    item = {
        "id": f"{name}-{i:06d}-{k}",
        "segment_ids": list(seg),
        "messages": convert_turns(turns, n_ecgs=len(seg)),
        "patient_id": row["patient_id"],
        "source": name,
        "meta": {
            "record_id": row["record_id"],
            "segment_index": row["segment_index"],
            "dataset": dataset,
            "source_id": entry.get("id"),
            "subset": entry.get("name", ""),
        },
    }
    validate_item(item, len(store))
    return item
