from __future__ import annotations

import dataclasses
import re
from collections import Counter

import pytest

from ecg_bench.data.conversations import ECG_MARKER, turn_labels, validate_item
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.synthetic_qa import round_to_10, synthetic_qa
from ecg_bench.errors import ConfigError, DataError
from config_helpers import data_config
from ecg_bench.config import MappedOptions, choice


def expected_answer(turn: dict, question: str, m: dict) -> str:
    """Independent re-derivation of the answer from the segment metadata."""
    attr, qtype = turn["attribute"], turn["question_type"]
    if qtype == "verify":
        truth = {
            "irregular_rhythm": m["rhythm"] == "irregular",
            "tachycardia": m["hr_category"] == "tachycardia",
            "bradycardia": m["hr_category"] == "bradycardia",
            "noisy": m["noisy"],
            "low_voltage": m["low_voltage"],
        }[attr]
        return "yes" if truth else "no"
    if qtype == "choose":
        options = (
            re.fullmatch(r"Is the (?:heart rate|rhythm|recording|QRS voltage) (.+)\?", question)
            .group(1)
            .replace(" or ", ", ")
            .split(", ")
        )
        answer = {
            "hr_category": {"bradycardia": "slow", "normal": "normal", "tachycardia": "fast"}[m["hr_category"]],
            "rhythm": m["rhythm"],
            "noisy": "noisy" if m["noisy"] else "clean",
            "low_voltage": "low" if m["low_voltage"] else "normal",
        }[attr]
        assert answer in options and len(set(options)) == len(options) >= 2
        return answer
    return {
        "hr_category": m["hr_category"],
        "rhythm": "sinus rhythm" if m["rhythm"] == "regular" else "atrial fibrillation",
        "heart_rate": str(int(m["heart_rate"] // 10 * 10 + (10 if m["heart_rate"] % 10 >= 5 else 0))),
    }[attr]


@pytest.fixture(scope="module")
def items(store):
    from ecg_bench.config import DataConfig

    return synthetic_qa(store, data_config(seed=0, multi_turn_fraction=0.25))


def test_registered():
    assert MAPPED.get("synthetic_qa") is synthetic_qa


def test_one_valid_item_per_segment(items, store):
    assert [it["segment_ids"] for it in items] == [[i] for i in range(len(store))]
    assert len({it["id"] for it in items}) == len(items)
    for it in items:
        validate_item(it, len(store))
        assert it["patient_id"] == store.index[it["segment_ids"][0]]["patient_id"]
        assert it["source"] == "synthetic_qa"
        assert it["messages"][0]["content"].startswith(ECG_MARKER + "\n")
        assert all(ECG_MARKER not in m["content"] for m in it["messages"][1:])


def test_answers_match_metadata(items, store):
    for it in items:
        m = store.index[it["segment_ids"][0]]["metadata"]
        turns = it["meta"]["turns"]
        assert len(it["messages"]) == 2 * len(turns)
        for k, turn in enumerate(turns):
            question = it["messages"][2 * k]["content"].removeprefix(ECG_MARKER + "\n")
            answer = it["messages"][2 * k + 1]["content"]
            assert answer == turn["answer"] == expected_answer(turn, question, m), (it, m)
        assert it["meta"]["question_type"] == turns[0]["question_type"]
        assert it["meta"]["attribute"] == turns[0]["attribute"]


def test_question_forms_all_used(items):
    types = Counter(t["question_type"] for it in items for t in it["meta"]["turns"])
    assert set(types) == {"verify", "choose", "query"} and min(types.values()) > 0.2 * sum(types.values())
    assert any(it["messages"][1]["content"] in ("fast", "slow", "normal") for it in items)
    assert any(it["messages"][1]["content"] == "atrial fibrillation" for it in items)
    assert any(re.fullmatch(r"\d+0", it["messages"][1]["content"]) for it in items)


def test_yes_no_balanced_overall_and_per_question(items):
    verify = [t for it in items for t in it["meta"]["turns"] if t["question_type"] == "verify"]
    assert len(verify) > 80
    yes = sum(t["answer"] == "yes" for t in verify) / len(verify)
    assert 0.4 <= yes <= 0.6
    by_attr = Counter((t["attribute"], t["answer"]) for t in verify)
    for attr in {a for a, _ in by_attr}:
        y, n = by_attr[(attr, "yes")], by_attr[(attr, "no")]
        assert abs(y - n) <= max(3, 0.25 * (y + n)), (attr, y, n)


def test_choose_options_are_shuffled(items):
    orders = {
        it["messages"][0]["content"]
        for it in items
        if it["meta"]["question_type"] == "choose" and it["meta"]["attribute"] == "hr_category"
    }
    assert len(orders) >= 3  # several permutations of slow / normal / fast


def test_multi_turn_fraction_and_topics(items):
    multi = [it for it in items if len(it["meta"]["turns"]) == 2]
    assert len(multi) == round(0.25 * len(items))
    topic = {
        "irregular_rhythm": "rhythm",
        "rhythm": "rhythm",
        "tachycardia": "rate",
        "bradycardia": "rate",
        "hr_category": "rate",
        "heart_rate": "rate",
        "noisy": "noise",
        "low_voltage": "voltage",
    }
    for it in multi:
        a, b = (t["attribute"] for t in it["meta"]["turns"])
        assert topic[a] != topic[b]
        # each turn names its topic (evaluation reports per topic), the item the first one's
        assert [t["topic"] for t in it["meta"]["turns"]] == [topic[a], topic[b]] and it["meta"]["topic"] == topic[a]
        assert turn_labels(it, 1) == {"question_type": it["meta"]["turns"][1]["question_type"], "topic": topic[b]}


def test_deterministic_and_seeded(store, data_cfg):
    a = synthetic_qa(store, data_cfg)
    assert a == synthetic_qa(store, data_cfg)
    assert a != synthetic_qa(store, dataclasses.replace(data_cfg, seed=1))
    assert all(len(it["meta"]["turns"]) == 1 for it in a)  # multi_turn_fraction 0 by default


def test_question_types_subset(store, data_cfg):
    only = synthetic_qa(store, dataclasses.replace(data_cfg, mapped=choice(MappedOptions, "synthetic_qa", question_types=["verify"])))
    assert {it["meta"]["question_type"] for it in only} == {"verify"}
    assert {it["messages"][1]["content"] for it in only} == {"yes", "no"}
    with pytest.raises(ConfigError, match="bogus"):
        synthetic_qa(store, dataclasses.replace(data_cfg, mapped=choice(MappedOptions, "synthetic_qa", question_types=["bogus"])))


def test_round_to_10():
    assert [round_to_10(x) for x in (84.9, 85.0, 115.0, 40.2, 149.9)] == [80, 90, 120, 40, 150]


def test_needs_synthetic_metadata(store, data_cfg, tmp_path):
    from ecg_bench.data.record import ECGRecord
    from ecg_bench.data.store import build_store

    rec = ECGRecord("r", "p", store.signals([0, 1, 2, 3, 4]).transpose(1, 0, 2).reshape(12, -1), 250.0)
    plain = build_store([rec], tmp_path / "plain", "plain", 250, 500)
    with pytest.raises(DataError, match="heart_rate"):
        synthetic_qa(plain, data_cfg)
