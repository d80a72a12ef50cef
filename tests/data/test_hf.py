"""Hugging Face ``datasets`` export / import of conversations with their folds (no network)."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from ecg_bench.data.hf import export_hf, import_hf, load_hf
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.splits import check_fold_splits, check_folds, patient_folds
from ecg_bench.data.store import build_store
from ecg_bench.errors import DataError


def _records(ids_patients, seconds=4.0, fs=250):
    rng = np.random.default_rng(1)
    return [ECGRecord(r, p, rng.normal(0, 0.1, (len(LEADS), int(seconds * fs))).astype(np.float32), fs) for r, p in ids_patients]


def test_export_import_round_trip(tiny_store, tiny_items, tmp_path):
    folds = patient_folds(tiny_items, 3, seed=0)
    out = export_hf(tiny_items, folds, tmp_path / "hf", store=tiny_store, seed=0, signals=True)
    dsd = datasets.load_from_disk(str(out))
    assert sorted(dsd) == ["fold1", "fold2", "fold3"]
    assert [len(dsd[f"fold{f + 1}"]) for f in range(3)] == [folds.count(f) for f in range(3)]
    meta = json.loads((out / "ecg_bench.json").read_text())
    assert meta["num_folds"] == 3 and meta["store"]["segment_len"] == tiny_store.segment_len
    row = dsd["fold1"].with_format("numpy")[0]
    first = next(it for it, f in zip(tiny_items, folds) if f == 0)
    assert row["id"] == first["id"]
    np.testing.assert_array_equal(row["signals"], tiny_store.signals(first["segment_ids"]))

    got = import_hf(str(out), tiny_store)
    order = {it["id"]: k for k, it in enumerate(got.items)}
    assert sorted(order) == sorted(it["id"] for it in tiny_items)
    for it, f in zip(tiny_items, folds):
        assert got.items[order[it["id"]]] == it and got.fold_of_item[order[it["id"]]] == f
    check_folds(got.items, got.fold_of_item)
    train, test = got.fold(1)
    assert {it["id"] for it in test} == {it["id"] for it, f in zip(tiny_items, folds) if f == 1}


def test_import_rejoins_a_rebuilt_store(tmp_path):
    recs = _records([(f"r{k}", f"p{k}") for k in range(4)])
    store_a = build_store(recs, tmp_path / "a", "synthetic", 250, 500)
    store_b = build_store(recs[::-1], tmp_path / "b", "synthetic", 250, 500)  # same records, other segment ids
    messages = [{"role": "user", "content": "<ecg>\nq"}, {"role": "assistant", "content": "a"}]
    items = [{"id": f"x{k}", "segment_ids": [2 * k + 1], "messages": messages, "patient_id": f"p{k}", "source": "t", "meta": {}}
             for k in range(4)]  # fmt: skip
    export_hf(items, [0, 1, 0, 1], tmp_path / "hf", store=store_a)
    got = import_hf(str(tmp_path / "hf"), store_b)
    for it in got.items:
        k = int(it["id"][1:])
        assert it["segment_ids"] != items[k]["segment_ids"]
        np.testing.assert_array_equal(store_b.signals(it["segment_ids"]), store_a.signals(items[k]["segment_ids"]))
    missing = import_hf(str(tmp_path / "hf"), build_store(recs[:2], tmp_path / "c", "synthetic", 250, 500))
    assert len(missing.items) == 2 and missing.report.to_dict()["skipped"] == {"missing_from_store": 2}


def _original_dataset(column="ecg_path"):
    """Rows in the format of the original ECG-Bench's published fold datasets (text JSON-encoded)."""
    root = "/data/ptb_xl/preprocessed_500_250"
    qa = {
        column: f"{root}/records500_06000_06002_hr_1.npy",
        "name": "ecg-qa-ptbxl",
        "text": json.dumps(["single-verify", "Does this ECG show burst noise in lead aVF?", ["no"]]),
    }
    chat = {
        column: f"{root}/records500_06000_06007_hr_0.npy",
        "name": "ecg-instruct",
        "text": json.dumps([{"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": "Sinus."}]),
    }
    other = {
        column: "/data/mimic_iv/preprocessed_500_250/files_p1000_p10000032_s40689238_40689238_0.npy",
        "name": "x",
        "text": json.dumps(["single-query", "q?", ["a", "b"]]),
    }
    far = {column: f"{root}/records500_06000_06008_hr_9.npy", "name": "ecg-qa-ptbxl", "text": qa["text"]}
    feats = datasets.Features({c: datasets.Value("string") for c in (column, "text", "name")})
    splits = {"fold1_train": [qa, qa, other], "fold1_test": [chat, far],
              "fold2_train": [chat, far], "fold2_test": [qa, qa, other]}  # fmt: skip
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v, features=feats) for k, v in splits.items()})  # fmt: skip


def test_import_original_fold_dataset(tmp_path):
    store = build_store(_records([("6002", "7588"), ("6007", "17597"), ("6008", "1237")]), tmp_path / "s", "ptbxl", 250, 500)
    _original_dataset().save_to_disk(str(tmp_path / "orig"))
    got = import_hf(str(tmp_path / "orig"), store)
    assert len(got.items) == 3  # two copies of the ECG-QA row + the chat row
    qa = [it for it in got.items if it["source"] == "ecg-qa-ptbxl"]
    assert [it["segment_ids"] for it in qa] == [[store.by_record("6002")[1]]] * 2
    assert qa[0]["messages"] == [{"role": "user", "content": "<ecg>\nDoes this ECG show burst noise in lead aVF?"},
                                 {"role": "assistant", "content": "no"}]  # fmt: skip
    assert qa[0]["meta"]["question_type"] == "single-verify"  # kept, so evaluation can report per type
    chat = next(it for it in got.items if it["source"] == "ecg-instruct")
    assert chat["messages"][0]["content"] == "<ecg>\nDescribe the signal." and chat["patient_id"] == "17597"
    assert "question_type" not in chat["meta"]
    assert got.splits["fold1"] == ([it["id"] for it in qa], [chat["id"]])
    assert got.splits["fold2"] == ([chat["id"]], [it["id"] for it in qa])
    train, test = got.fold(1)
    assert [it["id"] for it in test] == [it["id"] for it in qa]
    check_fold_splits({k: got.fold(int(k[4:]) - 1) for k in got.splits})
    report = got.report.to_dict()
    assert report["skipped"] == {"other_base_dataset": 1, "segment_out_of_range": 1}
    assert report["record_ids"]["segment_out_of_range"] == ["6008#9"]


def test_original_columns_can_be_renamed(tmp_path):
    store = build_store(_records([("6002", "1"), ("6007", "2")]), tmp_path / "s", "ptbxl", 250, 500)
    got = import_hf(_original_dataset(column="path"), store, column_map={"ecg_path": "path"})
    assert len(got.items) == 3


def test_load_errors(tmp_path, tiny_store):
    with pytest.raises(DataError, match="not a hub id"):
        load_hf(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="from the hub"):  # HF_HUB_OFFLINE=1 in the tests: no download is tried
        load_hf("willxxy/ecg-qa-ptbxl-ecg-250-2500")
    bad = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"a": 1}])})
    with pytest.raises(DataError, match="expected fold1..foldK"):
        import_hf(bad, tiny_store)
