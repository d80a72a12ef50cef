from __future__ import annotations

import copy

import pytest

from ecg_bench.data.conversations import load_jsonl, save_jsonl, turn_labels, validate_item
from ecg_bench.errors import DataError

ITEM = {
    "id": "x-1",
    "segment_ids": [3],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<ecg>\nIs the rhythm irregular?"},
        {"role": "assistant", "content": "no"},
        {"role": "user", "content": "Is there tachycardia?"},
        {"role": "assistant", "content": "yes"},
    ],
    "patient_id": "p1",
    "source": "test",
    "meta": {},
}


def test_valid_item_passes():
    validate_item(ITEM, n_segments=10)


def _broken(**changes):
    item = copy.deepcopy(ITEM)
    for k, v in changes.items():
        if v is None:
            del item[k]
        else:
            item[k] = v
    return item


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"segment_ids": [10]}, "segment_ids"),
        ({"segment_ids": []}, "segment_ids"),
        ({"segment_ids": ["3"]}, "segment_ids"),
        ({"patient_id": None}, "patient_id"),
        ({"patient_id": ""}, "patient_id"),
        ({"source": 3}, "source"),
        ({"meta": []}, "meta"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "<ecg>\nq"}]}, "messages"),  # no answer
        (
            {"messages": [{"role": "bot", "content": "<ecg>"}, {"role": "assistant", "content": "a"}]},
            "messages[0].role",
        ),
        ({"messages": [{"role": "user", "content": "<ecg>q"}, {"role": "user", "content": "a"}]}, "messages[1].role"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "messages",
        ),  # no marker
        (
            {"messages": [{"role": "user", "content": "<ecg>", "x": 1}, {"role": "assistant", "content": "a"}]},
            "messages[0]",
        ),
    ],
)
def test_bad_items_name_id_and_field(changes, field):
    with pytest.raises(DataError) as info:
        validate_item(_broken(**changes), n_segments=10)
    assert "'x-1'" in str(info.value) and f"'{field}'" in str(info.value)


def test_jsonl_round_trip_is_atomic(tmp_path):
    items = [ITEM, {**ITEM, "id": "x-2", "meta": {"note": "ünïcode"}}]
    path = save_jsonl(items, tmp_path / "sub" / "items.jsonl")
    assert load_jsonl(path) == items
    assert sorted(p.name for p in path.parent.iterdir()) == ["items.jsonl"]


def test_load_jsonl_errors_name_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a"}\n\n{"id": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:3"):
        load_jsonl(p)
    p.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: expected a JSON object"):
        load_jsonl(p)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_turn_labels_per_turn_then_item():
    item = {"meta": {"question_type": "single-verify", "topic": "noise", "turns": [{}, {"question_type": "query"}]}}
    assert turn_labels(item, 0) == {"question_type": "single-verify", "topic": "noise"}
    assert turn_labels(item, 1) == {"question_type": "query", "topic": "noise"}  # the turn's own type, the item's topic
    assert turn_labels({"meta": {"subset": "ptb-test"}}, 0) == {"question_type": None, "topic": None}
    assert turn_labels({"meta": {"question_type": 3, "topic": ""}}, 5) == {"question_type": "3", "topic": None}
