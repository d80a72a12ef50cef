"""The CODE-15% source on a faithful fixture: real PTB-XL signals at 400 Hz, zero-padded to 4096, in exams_partN.hdf5."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from layout_fixtures import code15_tracing, real_signal, write_code15_part, write_exams_csv

from ecg_bench.config import DataConfig
from ecg_bench.data.record import LEADS
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.sources.code15 import strip_padding
from ecg_bench.data.store import build_store
from ecg_bench.errors import DataError
from config_helpers import data_config


def _source(root):
    return SOURCES.get("code15")(data_config(data_dir=str(root)))


@pytest.fixture(scope="module")
def tracings(shared_data):
    return {
        1169160: code15_tracing(real_signal(shared_data, 6000)),  # 10 s
        2873686: code15_tracing(real_signal(shared_data, 6002), seconds=7.0),  # 7 s
        168405: code15_tracing(real_signal(shared_data, 6004)),
        590675: code15_tracing(real_signal(shared_data, 6006)),
    }


@pytest.fixture(scope="module")
def code15(tracings, tmp_path_factory):
    root = tmp_path_factory.mktemp("code15")
    write_code15_part(root / "exams_part0.hdf5", [(1169160, tracings[1169160]), (2873686, tracings[2873686])])
    write_code15_part(root / "exams_part1.hdf5", [(168405, tracings[168405]), (590675, tracings[590675])])
    write_exams_csv(
        root,
        [
            {"exam_id": 1169160, "patient_id": 523632, "trace_file": "exams_part0.hdf5", "normal_ecg": True},
            {
                "exam_id": 2873686,
                "patient_id": 1724173,
                "trace_file": "exams_part0.hdf5",
                "SB": True,
                "RBBB": True,
                "is_male": False,
            },
            {"exam_id": 168405, "patient_id": 1724173, "trace_file": "exams_part1.hdf5", "AF": True},
            {"exam_id": 590675, "patient_id": 21010, "trace_file": "exams_part1.hdf5", "1dAVb": True, "age": 81},
        ],
    )
    return root


def test_strip_padding():
    rng = np.random.default_rng(0)
    ten = rng.normal(size=(4000, 12)).astype(np.float32)
    padded = np.zeros((4096, 12), np.float32)
    padded[48:4048] = ten
    out, start = strip_padding(padded)
    assert start == 48 and np.array_equal(out, ten)
    # A 10 s recording whose first samples are exactly zero in every lead keeps its documented length.
    padded[48:60] = 0.0
    out, start = strip_padding(padded)
    assert (start, out.shape[0]) == (48, 4000)
    seven = np.zeros((4096, 12), np.float32)
    seven[648:3448] = ten[:2800]
    out, start = strip_padding(seven)
    assert start == 648 and np.array_equal(out, ten[:2800])
    odd = np.zeros((4096, 12), np.float32)
    odd[10:4090] = 1.0  # fits neither documented window: the non-zero span is kept
    assert strip_padding(odd)[0].shape[0] == 4080
    assert strip_padding(np.zeros((4096, 12), np.float32))[0].shape[0] == 0


def test_read_faithful_fixture(code15, tracings, shared_data):
    src = _source(code15)
    # File order, row order; the exam_id 0 filler row of each file is not listed.
    assert src.keys() == [
        "exams_part0.hdf5:1169160",
        "exams_part0.hdf5:2873686",
        "exams_part1.hdf5:168405",
        "exams_part1.hdf5:590675",
    ]
    recs = {k: src.read(k) for k in src.keys()}
    r = recs["exams_part0.hdf5:1169160"]
    assert (r.record_id, r.patient_id, r.fs, r.leads) == ("1169160", "523632", 400.0, LEADS)
    assert r.signal.shape == (12, 4000)
    np.testing.assert_array_equal(r.signal, tracings[1169160][48:4048].T)
    # The 400 Hz samples are the real record (in mV): every 5th 400 Hz sample is a 500 Hz sample's neighbourhood.
    ref = real_signal(shared_data, 6000)
    assert abs(float(np.abs(r.signal).max()) - float(np.abs(ref).max())) < 0.15
    seven = recs["exams_part0.hdf5:2873686"]
    assert seven.signal.shape == (12, 2800) and seven.metadata["duration_s"] == 7.0 and seven.metadata["padding_start"] == 648
    assert seven.labels == ["right bundle branch block", "sinus bradycardia"] and seven.metadata["sex"] == "female"
    assert recs["exams_part1.hdf5:168405"].labels == ["atrial fibrillation"]
    assert (
        recs["exams_part1.hdf5:590675"].labels == ["1st degree AV block"]
        and recs["exams_part1.hdf5:590675"].metadata["age"] == 81
    )
    assert r.labels == [] and r.metadata["normal_ecg"] is True and r.metadata["abnormalities"]["AF"] is False
    assert r.report == ""
    json.dumps([x.metadata for x in recs.values()])
    clone = pickle.loads(pickle.dumps(src))  # open HDF5 handles are not pickled; the clone reopens
    np.testing.assert_array_equal(clone.read("exams_part1.hdf5:590675").signal, recs["exams_part1.hdf5:590675"].signal)


def test_corrupt_inputs_are_skipped_by_name(code15, tracings, tmp_path):
    import shutil

    root = tmp_path / "code15"
    shutil.copytree(code15, root)
    nan_lead = tracings[590675].copy()
    nan_lead[48:4048, 2] = np.nan  # lead III missing
    write_code15_part(
        root / "exams_part2.hdf5",
        [(777, tracings[168405]), (778, np.zeros((4096, 12), np.float32)), (779, nan_lead), (780, tracings[1169160])],
    )
    (root / "exams_part3.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40)  # corrupt file
    write_code15_part(root / "exams_part4.hdf5", [(1001, tracings[168405]), (1002, tracings[590675])])
    data = (root / "exams_part4.hdf5").read_bytes()
    (root / "exams_part4.hdf5").write_bytes(data[: len(data) * 6 // 10])  # truncated file
    rows = [
        {"exam_id": 1169160, "patient_id": 523632, "trace_file": "exams_part0.hdf5"},
        {"exam_id": 2873686, "patient_id": 1724173, "trace_file": "exams_part0.hdf5"},
        {"exam_id": 168405, "patient_id": 1724173, "trace_file": "exams_part1.hdf5"},
        {"exam_id": 590675, "patient_id": 21010, "trace_file": "exams_part1.hdf5"},
        {"exam_id": 777, "patient_id": 9, "trace_file": "exams_part2.hdf5"},
        {"exam_id": 778, "patient_id": 9, "trace_file": "exams_part2.hdf5"},  # all-zero tracing
        {"exam_id": 779, "patient_id": 10, "trace_file": "exams_part2.hdf5"},  # NaN lead
        # exam 780 is in exams_part2.hdf5 but has no row
        {"exam_id": 781, "patient_id": 11, "trace_file": "exams_part1.hdf5"},  # row, not in its file
        {"exam_id": 901, "patient_id": 12, "trace_file": "exams_part3.hdf5"},  # in the corrupt file
        {"exam_id": 902, "patient_id": 13, "trace_file": "exams_part3.hdf5"},
        {"exam_id": 1001, "patient_id": 14, "trace_file": "exams_part4.hdf5"},
        {"exam_id": 1002, "patient_id": 15, "trace_file": "exams_part4.hdf5"},
    ]
    write_exams_csv(root, rows)
    src = _source(root)
    for key, reason in [
        ("exams_part3.hdf5:901", "unreadable file"),
        ("exams_part4.hdf5:1002", "unreadable file"),
        ("exams_part2.hdf5:780", "missing metadata"),
        ("exams_part1.hdf5:781", "missing file"),
        ("exams_part2.hdf5:778", "empty signal"),
    ]:
        with pytest.raises(DataError) as e:
            src.read(key)
        assert e.value.reason == reason, key
    store = build_store(src, tmp_path / "store", "code15", 250, 500, workers=1)
    assert store.meta["skipped"] == {
        "all-NaN lead": 1,
        "empty signal": 1,
        "missing file": 1,
        "missing metadata": 1,
        "unreadable file": 4,
    }
    assert sorted({r["record_id"] for r in store.index}) == ["1169160", "168405", "2873686", "590675", "777"]
    assert len(store.by_record("2873686")) == 3 and len(store.by_record("777")) == 5  # 7 s and 10 s at 250 Hz, 2 s segments


def test_duplicate_exam_ids_are_counted_skips(tracings, tmp_path):
    """An exam_id given twice (in one file, in two files, in two exams.csv rows) is read once; every
    later occurrence is a counted skip (``duplicate record id``), never silently dropped or merged."""
    root = tmp_path / "code15"
    root.mkdir()
    write_code15_part(root / "exams_part0.hdf5", [(1169160, tracings[1169160]), (2873686, tracings[2873686]),
                                                  (1169160, tracings[168405])])  # fmt: skip
    write_code15_part(root / "exams_part1.hdf5", [(590675, tracings[590675]), (2873686, tracings[168405])])
    write_exams_csv(
        root,
        [
            {"exam_id": 1169160, "patient_id": 523632, "trace_file": "exams_part0.hdf5"},
            {"exam_id": 2873686, "patient_id": 1724173, "trace_file": "exams_part0.hdf5"},
            {"exam_id": 590675, "patient_id": 21010, "trace_file": "exams_part1.hdf5"},
            {"exam_id": 590675, "patient_id": 99999, "trace_file": "exams_part1.hdf5"},  # a second row
        ],
    )
    src = _source(root)
    assert src.keys() == [
        "exams_part0.hdf5:1169160",
        "exams_part0.hdf5:2873686",
        "exams_part0.hdf5:1169160@2",
        "exams_part1.hdf5:590675",
        "exams_part1.hdf5:2873686@1",
        "exams.csv:590675@5",
    ]
    with pytest.raises(DataError, match="row 2 of exams_part0.hdf5 repeats the exam_id of row 0 of exams_part0.hdf5") as e:
        src.read("exams_part0.hdf5:1169160@2")
    assert e.value.reason == "duplicate record id"
    with pytest.raises(DataError, match="row 1 of exams_part1.hdf5 repeats the exam_id of row 1 of exams_part0.hdf5"):
        src.read("exams_part1.hdf5:2873686@1")
    with pytest.raises(DataError, match="line 5 of exams.csv repeats the exam_id of line 4 of exams.csv"):
        src.read("exams.csv:590675@5")
    np.testing.assert_array_equal(src.read("exams_part0.hdf5:1169160").signal, tracings[1169160][48:4048].T)  # the first

    store = build_store(src, tmp_path / "store", "code15", 250, 500, workers=1)
    assert store.meta["skipped"] == {"duplicate record id": 3} and store.meta["num_records"] == 3
    assert len(store.by_record("2873686")) == 3  # the 7 s exam of exams_part0, not merged with the second one
    assert {store.index[i]["patient_id"] for i in store.by_record("590675")} == {"21010"}
