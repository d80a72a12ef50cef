"""Questions made from a store's own labels and reports, so any base dataset trains without a download.

Every base dataset's records carry ``labels`` (PTB-XL: the English statements of ``scp_codes``; CPSC
2018 / CSN: the SNOMED-CT diagnosis names; CODE-15%: the positive abnormality columns) and most a
``report``. ``label_qa`` turns them into conversations, one per joined segment (``data.mapped_segments``),
with a question form drawn at random (seeded) from those enabled in ``data.mapped.question_types`` that apply
to the record:

- ``verify``: "Does this ECG show sinus bradycardia?" -> ``yes`` / ``no``, each with probability 1/2. The
  label asked about is a present one (yes) or an absent one drawn in proportion to how many records carry
  it (no), so the labels asked about follow the same frequencies for both answers and the question alone
  tells little (the stratified folds balance the answers too).
- ``choose``: "Which of these does this ECG show: A or B?" with one present and one absent label (drawn
  as above) in random order -> the present one.
- ``query``: "Which diagnostic statements apply to this ECG?" -> the record's labels in their order,
  joined by ", " (score with ROUGE / BLEU / BERTScore rather than exact accuracy).
- ``report``: "Write the report of this ECG." -> the record's report text (as stored: PTB-XL reports
  are often German unless the store was built with ``--data.source.report_language english``).

A record whose every enabled form is impossible (no labels, or every label present so nothing is absent,
and no report) is counted under ``no_labels`` in the mapping report, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collections import Counter
from typing import Any

import numpy as np

from ecg_bench.config import DataConfig, MappedOptions
from ecg_bench.data.conversations import ECG_MARKER, validate_item
from ecg_bench.data.mapped.base import MAPPED, mapped_options
from ecg_bench.data.mapped.joining import MappedItems, MappingReport, check_segment_policy, segment_groups, store_dataset
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError, DataError

NAME = "label_qa"
FORMS = ("verify", "choose", "query", "report")
LABEL_SEPARATOR = ", "


@dataclass
class LabelQAOptions(MappedOptions):
    """Questions made from each record's diagnostic labels (PTB-XL statements, CinC SNOMED-CT names)."""

    question_types: list[str] = field(default_factory=lambda: ["verify", "choose", "query"])
    """Question forms: verify, choose, query, report."""

    def problems(self) -> list[str]:
        bad = [t for t in self.question_types if t not in FORMS]
        return [f"question_types: {bad} not valid for {NAME}; valid: {', '.join(FORMS)}"] if bad else []


def enabled_forms(cfg: DataConfig) -> list[str]:
    """The question forms of ``data.mapped.question_types``; unknown ones are a ConfigError listing the valid forms."""
    types = mapped_options(cfg, LabelQAOptions).question_types
    bad = [t for t in types if t not in FORMS]
    if bad:
        raise ConfigError([f"data.mapped.question_types: {bad} not valid for {NAME}; valid: {', '.join(FORMS)}"])
    return list(dict.fromkeys(types))


def _records(store: SegmentStore) -> dict[str, dict[str, Any]]:
    """First index row of every record, in store order."""
    first: dict[str, dict[str, Any]] = {}
    for row in store.index:
        first.setdefault(row["record_id"], row)
    return first


def _absent(rng: np.random.Generator, present: list[str], names: list[str], weights: np.ndarray) -> str | None:
    """An absent label drawn in proportion to its record count (None if every label is present)."""
    mask = np.array([n not in present for n in names])
    if not mask.any():
        return None
    p = weights * mask
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _conversation(form: str, labels: list[str], report: str, rng, names, weights) -> tuple[str, str] | None:
    """``(question, answer)`` of one form for a record, or None when the form does not apply."""
    if form == "report":
        return ("Write the report of this ECG.", report.strip()) if report.strip() else None
    if not labels:
        return None
    if form == "query":
        return "Which diagnostic statements apply to this ECG?", LABEL_SEPARATOR.join(labels)
    other = _absent(rng, labels, names, weights)
    if other is None:
        return None
    present = labels[int(rng.integers(len(labels)))]
    if form == "choose":
        a, b = (present, other) if rng.random() < 0.5 else (other, present)
        return f"Which of these does this ECG show: {a} or {b}?", present
    yes = rng.random() < 0.5
    return f"Does this ECG show {present if yes else other}?", "yes" if yes else "no"


@MAPPED.register(NAME, options=LabelQAOptions)
def label_qa(store: SegmentStore, cfg: DataConfig) -> MappedItems:
    """Conversations from the store's labels and reports (see the module docstring)."""
    forms, policy = enabled_forms(cfg), check_segment_policy(cfg)
    records = _records(store)
    counts = Counter(label for row in records.values() for label in dict.fromkeys(row.get("labels") or []))
    if not counts and "report" not in forms:
        raise DataError(f"store {store.path}: no record has labels; {NAME} needs labels (or question type 'report')")
    names = sorted(counts)
    weights = np.array([counts[n] for n in names], dtype=np.float64)
    report = MappingReport(NAME, store_dataset(store), entries=len(records))
    items: list[dict[str, Any]] = []
    for n_rec, (rid, row) in enumerate(records.items()):
        labels = list(dict.fromkeys(row.get("labels") or []))
        for k, (seg,) in enumerate(segment_groups(store, [rid], policy)):
            rng = np.random.default_rng([cfg.seed, n_rec, k])
            made = None
            for form in (forms[i] for i in rng.permutation(len(forms))):  # a random form that applies
                if (qa := _conversation(form, labels, row.get("report", ""), rng, names, weights)) is not None:
                    made = _item(store, rid, k, seg, form, *qa)
                    break
            if made is None:
                report.skip("no_labels", [rid])
                break
            items.append(made)
    return report.finish(items)


def _item(store: SegmentStore, rid: str, k: int, seg: int, form: str, question: str, answer: str) -> dict[str, Any]:
    row = store.index[seg]
    item = {
        "id": f"{NAME}-{rid}-{k}",
        "segment_ids": [seg],
        "messages": [{"role": "user", "content": f"{ECG_MARKER}\n{question}"}, {"role": "assistant", "content": answer}],
        "patient_id": row["patient_id"],
        "source": NAME,
        "meta": {
            "question_type": form,
            "answer": answer,
            "record_id": rid,
            "segment_index": row["segment_index"],
            "dataset": store_dataset(store),
        },  # fmt: skip
    }
    validate_item(item, len(store))
    return item
