"""ECG-QA (Oh et al., 2023) questions joined to PTB-XL or MIMIC-IV-ECG segments.

Mapped datasets ``ecg_qa_ptbxl`` (store of ``data.source`` ptbxl) and ``ecg_qa_mimic_iv_ecg``
(store of mimic_iv_ecg). Download: https://github.com/Jwoo5/ecg-qa (``ecgqa/``); ``data.mapped_dir``
is that folder (holding ``ptbxl/`` and ``mimic-iv-ecg/``), one of its two subfolders, or a folder
holding ``ecg-qa/``. Layout read::

    <ptbxl | mimic-iv-ecg>/<template | paraphrased>/<train | valid | test>/*.json

Each JSON file is a list of entries with the fields used here::

    {"template_id": 26, "question_id": 1709, "sample_id": 120000,
     "question_type": "single-verify", "attribute_type": "noise",
     "question": "Does this ECG show static noise in lead aVL?",
     "answer": ["no"], "ecg_id": [3637], "attribute": ["static noise"]}

``ecg_id`` is the PTB-XL ecg_id, or the MIMIC-IV-ECG study_id; an entry produced by ECG-QA's own
mapping scripts may instead carry ``ecg_path`` (a path into the download), resolved the same way.

- Question types: ``data.mapped.question_types``; the short forms verify / choose / query mean
  single-verify / single-choose / single-query (the original ECG-Bench's default); full type names
  (``comparison_consecutive-verify``, ...) select the comparison questions.
- Variant and splits: ``data.mapped.qa_variant`` (template / paraphrased / both, the original reads both)
  and ``data.mapped.qa_splits``; folds are then made over everything read, as in the original.
- Answer: the ``answer`` list joined with a space in its original order (the original ECG-Bench's
  ``" ".join(answer)``), so that scores compare with the original's. An ``answer`` given as one
  string (``"yes"``) is that one answer.
- Checked fields: an entry that is not an object, has no ``question``, ``sample_id`` or ``answer``
  (or an empty one), or an ``ecg_id`` that is not a whole number (``6002.7``) is counted as
  ``bad_entry`` with its place (``template/train/120000.json[17]``) and why; an entry repeating the
  ``sample_id`` of an earlier one of its variant and split is counted as ``duplicate_entry``.
- A comparison question about k ECGs has k ``<ecg>`` markers, one per ECG in ``ecg_id`` order; the
  item's ``patient_id`` is the first ECG's patient and ``meta.patient_ids`` lists all of them, so
  folds keep every involved patient on one side.
- Segments: ``data.mapped_segments`` (see ``joining``). An entry whose ECG is not in the store is
  counted under ``missing_from_store`` with its record ids, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path
from typing import Any

from ecg_bench.config import DataConfig, MappedOptions
from ecg_bench.data.conversations import ECG_MARKER, validate_item
from ecg_bench.data.mapped.base import MAPPED, mapped_options
from ecg_bench.data.mapped.joining import (
    BAD_ENTRY,
    DUPLICATE,
    FILTERED,
    MISSING,
    UNRESOLVED,
    MappedItems,
    MappingReport,
    check_segment_policy,
    json_type,
    load_json,
    resolve_ecg_ref,
    segment_groups,
    store_dataset,
)
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger, progress

log = get_logger(__name__)

VARIANTS = ("template", "paraphrased")
QUESTION_TYPES = (
    "single-verify", "single-choose", "single-query",
    "comparison_consecutive-verify", "comparison_consecutive-query",
    "comparison_irrelevant-verify", "comparison_irrelevant-query",
)  # fmt: skip
SHORT_TYPES = {"verify": "single-verify", "choose": "single-choose", "query": "single-query"}
ANSWER_SEPARATOR = " "
# mapped name -> (base dataset of the store, ECG-QA subfolder)
VERSIONS = {"ecg_qa_ptbxl": ("ptbxl", "ptbxl"), "ecg_qa_mimic_iv_ecg": ("mimic_iv_ecg", "mimic-iv-ecg")}


@dataclass
class ECGQAOptions(MappedOptions):
    """ECG-QA (Oh et al. 2023): template and paraphrased questions about PTB-XL or MIMIC-IV-ECG records."""

    question_types: list[str] = field(default_factory=lambda: ["verify", "choose", "query"])
    """Question types: single-verify / single-choose / single-query (or verify, choose, query) and the comparison
    types (e.g. comparison_consecutive-verify)."""
    qa_variant: str = "both"
    """Question wording: template, paraphrased or both (the original ECG-Bench reads both)."""
    qa_splits: list[str] = field(default_factory=lambda: ["train", "valid", "test"])
    """Release splits to read; folds are made over all of them, as in the original ECG-Bench."""

    def problems(self) -> list[str]:
        p = []
        if self.qa_variant not in ("template", "paraphrased", "both"):
            p.append(f"qa_variant must be 'template', 'paraphrased' or 'both', got {self.qa_variant!r}")
        full = [SHORT_TYPES.get(t, t) for t in self.question_types]
        bad = [t for t, f in zip(self.question_types, full) if f not in QUESTION_TYPES]
        if bad or not full:
            p.append(f"question_types: unknown for ECG-QA {bad or '(empty)'}; valid: {', '.join([*SHORT_TYPES, *QUESTION_TYPES])}")
        return p


@dataclass
class ECGQAPTBXLOptions(ECGQAOptions):
    """ECG-QA, PTB-XL version."""


@dataclass
class ECGQAMIMICOptions(ECGQAOptions):
    """ECG-QA, MIMIC-IV-ECG version."""


def question_types(cfg: DataConfig) -> list[str]:
    """``data.mapped.question_types`` as full ECG-QA type names (short forms expanded); ConfigError if unknown."""
    types = mapped_options(cfg, ECGQAOptions).question_types
    full = [SHORT_TYPES.get(t, t) for t in types]
    bad = [t for t, f in zip(types, full) if f not in QUESTION_TYPES]
    if bad or not full:
        valid = ", ".join([*SHORT_TYPES, *QUESTION_TYPES])
        raise ConfigError([f"data.mapped.question_types: unknown for ECG-QA {bad or '(empty)'}; valid: {valid}"])
    return list(dict.fromkeys(full))


def qa_root(cfg: DataConfig, subfolder: str) -> Path:
    """The ECG-QA folder of one version (the one holding template/ and paraphrased/)."""
    if not cfg.mapped_dir:
        raise ConfigError([f"data.mapped_dir is empty; set it to the ECG-QA download (holding {subfolder}/)"])
    root = Path(cfg.mapped_dir)
    for cand in (root, root / subfolder, root / "ecg-qa" / subfolder, root / "ecgqa" / subfolder):
        if any((cand / v).is_dir() for v in VARIANTS):
            return cand
    raise DataError(f"ECG-QA: no template/ or paraphrased/ folder in {root}, {root / subfolder} or {root / 'ecg-qa' / subfolder}")


def read_entries(root: Path, variants: list[str], splits: list[str]) -> list[tuple[str, str, str, Any]]:
    """``(variant, split, place, entry)`` of every JSON file under ``root/<variant>/<split>/``, files in name
    order; ``place`` (``template/train/120000.json[17]``) names the entry in messages."""
    out: list[tuple[str, str, str, Any]] = []
    for variant in variants:
        for split in splits:
            files = sorted((root / variant / split).glob("*.json"))
            if not files:
                log.warning("ECG-QA: no JSON files in %s (split %s of %s not at hand)", root / variant / split, split, variant)
            for f in files:
                data = load_json(f)
                if not isinstance(data, list):
                    raise DataError(f"{f}: expected a JSON list of ECG-QA entries, got {type(data).__name__}")
                out.extend((variant, split, f"{variant}/{split}/{f.name}[{i}]", e) for i, e in enumerate(data))
    if not out:
        raise DataError(f"ECG-QA: no entries under {root} for variants {variants} and splits {splits}")
    return out


class _BadEntry(Exception):
    """An entry the mapper cannot read; the message says why (counted under ``bad_entry``)."""


def _ecg_number(value: Any) -> str:
    """``6002`` / ``6002.0`` / ``"6002"`` -> ``"6002"``; anything else (``6002.7``, ``true``) -> _BadEntry."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _BadEntry(f"'ecg_id' holds {json_type(value)}, expected whole numbers")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise _BadEntry("'ecg_id' holds a string that is not a whole number")
        return str(int(value))
    if isinstance(value, float) and not value.is_integer():
        raise _BadEntry("'ecg_id' holds a number that is not a whole number (e.g. 6002.7)")
    return str(int(value))


def _record_ids(entry: dict[str, Any], base: str) -> list[str] | None:
    """The entry's record ids (``ecg_id``, or ``ecg_path`` resolved); None if a path is of no known form."""
    ecg_id = entry.get("ecg_id")
    if ecg_id not in (None, []):
        return [_ecg_number(e) for e in (ecg_id if isinstance(ecg_id, list) else [ecg_id])]
    paths = entry.get("ecg_path")
    if paths in (None, []):
        raise _BadEntry("no 'ecg_id' (or 'ecg_path')")
    paths = paths if isinstance(paths, list) else [paths]
    if not all(isinstance(p, str) for p in paths):
        raise _BadEntry("'ecg_path' holds something other than strings")
    resolved = [resolve_ecg_ref(p, base) for p in paths]
    if any(r is None or r[0] != base for r in resolved):
        return None
    return [r[1] for r in resolved]  # type: ignore[index]


def _answers(entry: dict[str, Any]) -> list[str]:
    """``answer`` as a list of strings: a list as is (its scalars as text), one string as one answer."""
    answer = entry.get("answer")
    if isinstance(answer, str):
        answer = [answer]
    if not isinstance(answer, list):
        raise _BadEntry("no 'answer'" if answer is None else f"'answer' is {json_type(answer)}, expected a list of strings")
    if any(isinstance(a, bool) or not isinstance(a, str | int | float) for a in answer):
        raise _BadEntry("'answer' holds something other than strings")
    answers = [str(a) for a in answer]
    if not any(a.strip() for a in answers):
        raise _BadEntry("'answer' is empty")
    return answers


def _check(entry: dict[str, Any]) -> None:
    question, sample_id = entry.get("question"), entry.get("sample_id")
    if not isinstance(question, str) or not question.strip():
        raise _BadEntry("no 'question'" if question in (None, "") else f"'question' is {json_type(question)}, expected a string")
    if isinstance(sample_id, bool) or not isinstance(sample_id, int | str) or sample_id == "":
        raise _BadEntry("no 'sample_id'" if sample_id is None else f"'sample_id' is {json_type(sample_id)}, expected an integer")


def map_ecg_qa(store: SegmentStore, cfg: DataConfig, name: str) -> MappedItems:
    """Items of ECG-QA version ``name`` joined to ``store`` (see the module docstring)."""
    base, subfolder = VERSIONS[name]
    if store_dataset(store) != base:
        held = store_dataset(store)
        raise ConfigError([f"{name} joins {base} ECGs, but the store {store.path} holds {held!r}; set data.source {base}"])
    policy = check_segment_policy(cfg)
    types = set(question_types(cfg))
    opts = mapped_options(cfg, ECGQAOptions)
    variants = list(VARIANTS) if opts.qa_variant == "both" else [opts.qa_variant]
    entries = read_entries(qa_root(cfg, subfolder), variants, list(opts.qa_splits))
    report = MappingReport(name, base, entries=len(entries))
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for variant, split, place, entry in progress(entries, desc=f"mapping {name}", unit="entry"):
        if not isinstance(entry, dict):
            report.skip(BAD_ENTRY, [place], detail=f"entry is {json_type(entry)}, expected a JSON object")
            continue
        if entry.get("question_type") not in types:
            report.skip(FILTERED)
            continue
        try:
            _check(entry)
            answers = _answers(entry)
            rids = _record_ids(entry, base)
        except _BadEntry as e:
            report.skip(BAD_ENTRY, [place], detail=str(e))
            continue
        if rids is None:
            report.skip(UNRESOLVED, [str(entry.get("ecg_path"))])
            continue
        groups = segment_groups(store, rids, policy)
        if not groups:
            report.skip(MISSING, [r for r in rids if not store.by_record(r)])
            continue
        made = [_item(store, name, variant, split, entry, answers, k, seg) for k, seg in enumerate(groups)]
        if any(item["id"] in seen for item in made):
            report.skip(DUPLICATE, [place], detail=f"sample_id repeats an earlier entry's in {variant}/{split}")
            continue
        seen.update(item["id"] for item in made)
        items.extend(made)
    return report.finish(items)


def _item(
    store: SegmentStore,
    name: str,
    variant: str,
    split: str,
    entry: dict[str, Any],
    answers: list[str],
    k: int,
    seg: list[int],
) -> dict[str, Any]:
    rows = [store.index[s] for s in seg]
    answer = ANSWER_SEPARATOR.join(answers)
    question = "\n".join([ECG_MARKER] * len(seg) + [entry["question"]])
    item = {
        "id": f"{name}-{variant}-{split}-{entry['sample_id']}-{k}",
        "segment_ids": list(seg),
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        "patient_id": rows[0]["patient_id"],
        "source": name,
        "meta": {
            "question_type": entry["question_type"],
            "attribute_type": entry.get("attribute_type"),
            "topic": entry.get("attribute_type"),  # the uniform key evaluation groups by (data.conversations)
            "attribute": entry.get("attribute"),
            "template_id": entry.get("template_id"),
            "question_id": entry.get("question_id"),
            "sample_id": entry["sample_id"],
            "variant": variant,
            "split": split,
            "answer": answer,
            "answers": answers,
            "record_ids": [r["record_id"] for r in rows],
            "segment_indices": [r["segment_index"] for r in rows],
            "patient_ids": list(dict.fromkeys(r["patient_id"] for r in rows)),
            "dataset": store_dataset(store),
        },
    }
    validate_item(item, len(store))
    return item


@MAPPED.register("ecg_qa_ptbxl", options=ECGQAPTBXLOptions)
def ecg_qa_ptbxl(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """ECG-QA, PTB-XL version, joined to a PTB-XL store."""
    return map_ecg_qa(store, cfg, "ecg_qa_ptbxl")


@MAPPED.register("ecg_qa_mimic_iv_ecg", options=ECGQAMIMICOptions)
def ecg_qa_mimic_iv_ecg(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """ECG-QA, MIMIC-IV-ECG version, joined to a MIMIC-IV-ECG store."""
    return map_ecg_qa(store, cfg, "ecg_qa_mimic_iv_ecg")
