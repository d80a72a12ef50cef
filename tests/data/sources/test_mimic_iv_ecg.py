"""The MIMIC-IV-ECG source on a faithful fixture: real PTB-XL signals written in MIMIC's layout and lead order."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from layout_fixtures import MIMIC_LEADS, mimic_path, real_signal, to_mimic_order, truncate, write_mimic

from ecg_bench.config import DataConfig
from ecg_bench.data.record import LEADS
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.store import build_store
from ecg_bench.errors import DataError
from ecg_bench.signals.processing import resample, to_canonical_leads
from config_helpers import data_config

GAIN_STEP = 1 / 200  # MIMIC-IV-ECG stores 200 adu/mV: values are exact to half a step

GOOD = [
    {
        "subject": 10000032,
        "study": 40689238,
        "ecg": 6000,
        "reports": ["Sinus rhythm", "Possible left atrial abnormality", None, "Borderline ECG"],
    },
    {"subject": 10000032, "study": 44458630, "ecg": 6002, "reports": ["Sinus bradycardia", "Normal ECG"]},
    {"subject": 10000117, "study": 45090959, "ecg": 6004, "reports": []},
]


def _source(root):
    return SOURCES.get("mimic_iv_ecg")(data_config(data_dir=str(root)))


@pytest.fixture(scope="module")
def mimic(shared_data, tmp_path_factory):
    studies = [{**s, "signal": to_mimic_order(real_signal(shared_data, s["ecg"]))} for s in GOOD]
    return write_mimic(tmp_path_factory.mktemp("mimic"), studies)


def test_read_real_signals_in_mimic_layout(mimic, shared_data):
    src = _source(mimic)
    assert src.keys() == [mimic_path(s["subject"], s["study"]) for s in GOOD]
    recs = [src.read(k) for k in src.keys()]
    for spec, rec in zip(GOOD, recs, strict=True):
        assert (rec.record_id, rec.patient_id) == (str(spec["study"]), str(spec["subject"]))
        assert rec.fs == 500.0 and rec.signal.shape == (12, 5000)
        assert rec.leads == MIMIC_LEADS  # the header's names and order are kept
        ref = real_signal(shared_data, spec["ecg"])
        np.testing.assert_allclose(rec.signal, to_mimic_order(ref).T, atol=GAIN_STEP / 2 + 1e-6)
        # The canonical reorder (done by preprocessing) swaps aVF/aVL back: PTB-XL's own order.
        np.testing.assert_allclose(to_canonical_leads(rec.signal, rec.leads), ref.T, atol=GAIN_STEP / 2 + 1e-6)
    assert recs[0].report == "Sinus rhythm Possible left atrial abnormality Borderline ECG"
    assert recs[0].metadata["report_lines"] == ["Sinus rhythm", "Possible left atrial abnormality", "Borderline ECG"]
    assert recs[1].report == "Sinus bradycardia Normal ECG"
    assert recs[2].report == "" and recs[2].metadata["report_lines"] == []
    meta = recs[0].metadata
    assert (meta["subject_id"], meta["study_id"], meta["ecg_time"]) == (10000032, 40689238, "2180-07-23 08:44:00")
    assert (meta["rr_interval"], meta["qrs_axis"], meta["bandwidth"], meta["cart_id"]) == (659, 48, "0.005-150 Hz", 6848296)
    json.dumps([r.metadata for r in recs])
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.read(src.keys()[1]).signal, recs[1].signal)


def test_store_from_mimic_has_canonical_leads(mimic, shared_data, tmp_path):
    store = build_store(_source(mimic), tmp_path / "store", "mimic_iv_ecg", 250, 1250, workers=1)
    assert store.meta["skipped"] == {} and store.meta["num_records"] == 3
    seg = store.by_record("44458630")
    assert len(seg) == 2 and store.index[seg[0]]["patient_id"] == "10000032"
    expected = resample(real_signal(shared_data, 6002).T, 500, 250)  # canonical (PTB-XL) order
    got = store.signals(seg).transpose(1, 0, 2).reshape(12, -1)
    np.testing.assert_allclose(got, expected, atol=5e-3)
    assert LEADS.index("aVL") == 4 and np.abs(got[4] - expected[4]).max() < 5e-3


def test_corrupt_inputs_are_skipped_by_name(shared_data, tmp_path):
    ref = {e: to_mimic_order(real_signal(shared_data, e)) for e in (6001, 6003, 6005, 6006, 6007, 6008, 6009)}
    nan_lead = ref[6006].copy()
    nan_lead[:, 5] = np.nan  # aVL all missing
    studies = [
        {"subject": 10000001, "study": 40000001, "signal": ref[6001], "reports": ["Sinus rhythm"]},  # good
        {"subject": 10000002, "study": 40000002, "signal": ref[6003], "reports": ["x"], "in_measurements": False},
        {"subject": 10000003, "study": 40000003, "signal": None, "reports": ["Sinus rhythm"]},  # row, no file
        {"subject": 10000004, "study": 40000004, "signal": ref[6005], "reports": ["Atrial fibrillation"]},  # truncated below
        {"subject": 10000005, "study": 40000005, "signal": nan_lead, "reports": ["Sinus rhythm"]},
        {
            "subject": 10000006,
            "study": 40000006,
            "signal": ref[6007][:, :11],
            "names": MIMIC_LEADS[:11],
            "reports": ["Sinus rhythm"],
        },
        {
            "subject": 10000007,
            "study": 40000007,
            "signal": ref[6008],
            "reports": ["Normal ECG"],
        },  # header says more samples below
        {"subject": 10000008, "study": 40000008, "signal": ref[6009], "reports": ["Sinus tachycardia"]},  # good
    ]
    root = write_mimic(tmp_path / "mimic", studies)
    truncate(root / (mimic_path(10000004, 40000004) + ".dat"), 0.9)
    hea = root / (mimic_path(10000007, 40000007) + ".hea")
    hea.write_text(hea.read_text().replace("40000007 12 500 5000", "40000007 12 500 6000", 1))

    src = _source(root)
    with pytest.raises(DataError) as e:
        src.read(mimic_path(10000002, 40000002))
    assert e.value.reason == "missing metadata"
    store = build_store(src, tmp_path / "store", "mimic_iv_ecg", 250, 500, workers=1)
    assert store.meta["skipped"] == {
        "all-NaN lead": 1,
        "missing file": 1,
        "missing metadata": 1,
        "truncated file": 2,
        "wrong lead count": 1,
    }
    assert sorted({r["record_id"] for r in store.index}) == ["40000001", "40000008"]
    assert len(store.by_record("40000008")) == 5


def test_header_rate_other_than_the_datasets_is_a_named_skip(shared_data, tmp_path):
    """One rule for every reader (sources.base): a MIMIC-IV-ECG header saying 250 Hz is skipped, as PTB-XL does."""
    studies = [
        {"subject": 10000001, "study": 40000001, "signal": to_mimic_order(real_signal(shared_data, 6001)), "reports": ["x"]},
        {"subject": 10000002, "study": 40000002, "signal": to_mimic_order(real_signal(shared_data, 6003)), "reports": ["y"]},
    ]
    root = write_mimic(tmp_path / "mimic", studies)
    hea = root / (mimic_path(10000002, 40000002) + ".hea")
    hea.write_text(hea.read_text().replace("40000002 12 500 5000", "40000002 12 250 5000", 1))
    src = _source(root)
    with pytest.raises(DataError, match="40000002.hea: header says 250 Hz, MIMIC-IV-ECG records are 500 Hz") as e:
        src.read(mimic_path(10000002, 40000002))
    assert e.value.reason == "unexpected sampling rate"
    store = build_store(src, tmp_path / "store", "mimic_iv_ecg", 250, 500, workers=1)
    assert store.meta["skipped"] == {"unexpected sampling rate": 1} and store.meta["num_records"] == 1
