"""A conversation dataset: for every segment whose record has a report, ask for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecg_bench.config import DataConfig, MappedOptions
from ecg_bench.data.conversations import validate_item
from ecg_bench.data.mapped.base import MAPPED, mapped_options
from ecg_bench.data.store import SegmentStore


@dataclass
class ReportQAOptions(MappedOptions):
    """Report questions: '<ecg> Describe this ECG.' answered with the record's report."""

    question: str = "Describe this ECG."
    """The question asked about every segment."""
    min_words: int = 1
    """Leave out segments whose report has fewer words than this."""

    def problems(self) -> list[str]:
        return [f"min_words must be >= 1, got {self.min_words}"] if self.min_words < 1 else []


@MAPPED.register("report_qa", options=ReportQAOptions)
def report_qa(store: SegmentStore, cfg: DataConfig) -> list[dict[str, Any]]:
    opts = mapped_options(cfg, ReportQAOptions)  # cfg.mapped (or the item of data.mix being built)
    items = []
    for row in store.index:
        report = (row.get("report") or "").strip()
        if len(report.split()) < opts.min_words:
            continue
        item = {
            "id": f"report_qa-{row['segment_id']:06d}",
            "segment_ids": [row["segment_id"]],
            "messages": [{"role": "user", "content": f"<ecg>\n{opts.question}"}, {"role": "assistant", "content": report}],
            "patient_id": row["patient_id"],  # folds never split a patient
            "source": "report_qa",
            "meta": {"question_type": "report", "record_id": row["record_id"]},
        }
        validate_item(item, len(store))
        items.append(item)
    return items
