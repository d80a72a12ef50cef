"""label_qa: conversations from a store's own labels and reports (real PTB-XL records)."""

from __future__ import annotations

from collections import Counter

import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.errors import ConfigError, DataError
from config_helpers import data_config

ALL = ["verify", "choose", "query", "report"]


def _cfg(**kw) -> DataConfig:
    return data_config(source="ptbxl", mapped="label_qa", **kw)


def test_every_form_is_true_to_the_record(ptbxl_store):
    items = MAPPED.get("label_qa")(ptbxl_store, _cfg(question_types=ALL))
    assert len(items) == len(ptbxl_store)  # one per segment: 10 records x 5 segments
    assert items.reports[0].skipped == Counter()
    forms = Counter(it["meta"]["question_type"] for it in items)
    assert set(forms) == set(ALL)
    all_labels = {label for row in ptbxl_store.index for label in row["labels"]}
    for it in items:
        (seg,) = it["segment_ids"]
        row = ptbxl_store.index[seg]
        assert it["patient_id"] == row["patient_id"] and it["meta"]["record_id"] == row["record_id"]
        question, answer = it["messages"][0]["content"], it["messages"][1]["content"]
        assert question.startswith("<ecg>\n")
        form = it["meta"]["question_type"]
        if form == "verify":
            label = question.removeprefix("<ecg>\nDoes this ECG show ").removesuffix("?")
            assert label in all_labels and answer == ("yes" if label in row["labels"] else "no")
        elif form == "choose":
            a, b = question.removeprefix("<ecg>\nWhich of these does this ECG show: ").removesuffix("?").split(" or ")
            assert answer in (a, b) and answer in row["labels"] and ({a, b} - {answer}).isdisjoint(row["labels"])
        elif form == "query":
            assert answer == ", ".join(row["labels"])
        else:
            assert answer == row["report"] and answer
    # the real record 6002: sinus bradycardia, incomplete RBBB
    q6002 = [it for it in items if it["meta"]["record_id"] == "6002" and it["meta"]["question_type"] == "query"]
    expected = "normal ECG, incomplete right bundle branch block, sinus bradycardia"
    assert q6002 and all(it["messages"][1]["content"] == expected for it in q6002)


def test_verify_answers_are_balanced_and_seeded(ptbxl_store):
    items = MAPPED.get("label_qa")(ptbxl_store, _cfg(question_types=["verify"], seed=3))
    answers = Counter(it["messages"][1]["content"] for it in items)
    assert answers["yes"] + answers["no"] == len(items) == 50 and 15 <= answers["yes"] <= 35
    again = MAPPED.get("label_qa")(ptbxl_store, _cfg(question_types=["verify"], seed=3))
    assert [it["messages"] for it in again] == [it["messages"] for it in items]
    other = MAPPED.get("label_qa")(ptbxl_store, _cfg(question_types=["verify"], seed=4))
    assert [it["messages"] for it in other] != [it["messages"] for it in items]


def test_first_segment_policy_and_unusable_records_are_reported(ptbxl_store, make_store):
    first = MAPPED.get("label_qa")(ptbxl_store, _cfg(question_types=ALL, mapped_segments="first"))
    assert len(first) == 10 and all(ptbxl_store.index[it["segment_ids"][0]]["segment_index"] == 0 for it in first)
    bare = make_store("csn", [("JS00001", "JS00001"), ("JS00002", "JS00002")])  # no labels, no report
    with pytest.raises(DataError, match="no record has labels"):
        MAPPED.get("label_qa")(bare, _cfg(question_types=["verify"]))
    out = MAPPED.get("label_qa")(bare, _cfg(question_types=["verify", "report"]))
    assert len(out) == 0 and out.reports[0].skipped == Counter({"no_labels": 2})
    with pytest.raises(ConfigError, match="single-verify"):
        MAPPED.get("label_qa")(ptbxl_store, _cfg(question_types=["single-verify"]))
