"""CSN (Chapman-Shaoxing / Ningbo) read from the real records in ../shared/data/csn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import wfdb
from cinc_fixtures import copy_record, edit_header, load_val, source, write_val

from ecg_bench.data.record import LEADS
from ecg_bench.data.store import build_store
from ecg_bench.errors import DataError

STEMS = [f"JS200{i:02d}" for i in range(20)]


@pytest.fixture(scope="module")
def folder(shared_data):
    return shared_data / "csn" / "WFDBRecords" / "20" / "200"


@pytest.fixture(scope="module")
def records(shared_data):
    csn = source("csn", shared_data / "csn")
    return {r.record_id: r for r in (csn.read(k) for k in csn.keys())}


def test_keys_follow_the_wfdbrecords_layout(shared_data):
    assert source("csn", shared_data / "csn").keys() == [f"WFDBRecords/20/200/{s}" for s in STEMS]
    assert source("csn", shared_data / "csn" / "WFDBRecords").keys() == [f"20/200/{s}" for s in STEMS]


def test_real_records_10s_500hz_leads_and_metadata(records):
    assert sorted(records) == STEMS
    for rid, r in records.items():
        assert r.signal.shape == (12, 5000) and r.fs == 500.0 and r.leads == LEADS and r.patient_id == rid
        assert not any(label.startswith("SNOMED ") for label in r.labels)  # every code is in the shipped table
    js1 = records["JS20001"]
    assert js1.metadata["age"] == 77 and js1.metadata["sex"] == "male"
    assert js1.metadata["dx_codes"] == ["284470004", "427084000", "698252002"]
    assert js1.labels == ["premature atrial contraction", "sinus tachycardia", "nonspecific intraventricular conduction disorder"]
    assert js1.report == "Premature atrial contraction. Sinus tachycardia. Nonspecific intraventricular conduction disorder."
    assert records["JS20008"].metadata["age"] == 5 and records["JS20008"].labels[-1] == "sinus arrhythmia"
    js17 = records["JS20017"]  # eight codes, in header order
    assert js17.metadata["dx_abbreviations"] == ["PAC", "STIAb", "STach", "LVHV", "TInv", "NSIVCB", "PRWP", "TAb"]
    assert "ST interval abnormal." in js17.report and "Poor R wave Progression." in js17.report
    assert records["JS20000"].metadata["sex"] == "female" and records["JS20000"].labels[-1] == "s t changes"


def test_amplitudes_in_millivolts(records, folder):
    for rid, r in records.items():
        val = scipy.io.loadmat(folder / f"{rid}.mat")["val"]
        np.testing.assert_allclose(r.signal, val / 1000.0, rtol=0, atol=1e-6)  # "1000.0(0)/mV": gain 1000, baseline 0
    ref = wfdb.rdrecord(str(folder / "JS20002"))
    np.testing.assert_allclose(records["JS20002"].signal, ref.p_signal.T, rtol=0, atol=1e-6)
    assert records["JS20002"].signal[7, 0] == pytest.approx(-1.376)  # V2 first value -1376 adu in the header


def test_store_from_real_records_skips_the_two_with_dead_chest_leads(shared_data, records, tmp_path):
    # JS20004 and JS20008 are recorded with V2, V4 and V6 all zero: the store's flat-lead policy drops them.
    for rid in ("JS20004", "JS20008"):
        assert not records[rid].signal[[7, 9, 11]].any() and records[rid].signal[[6, 8, 10]].std(axis=1).min() > 0.05
    store = build_store(source("csn", shared_data / "csn"), tmp_path / "store", "csn", 250, 500)
    assert store.meta["skipped"] == {"flat lead": 2}
    assert {r["record_id"] for r in store.meta["skipped_records"]} == {"JS20004", "JS20008"}
    assert store.meta["num_records"] == 18 and len(store) == 18 * 5
    seg = store.signal(store.by_record("JS20002")[0])
    assert seg[7, 0] == pytest.approx(-1.376, abs=0.05)  # V2 starts at -1376 adu = -1.376 mV


def test_store_and_damaged_copies(folder, tmp_path):
    root = tmp_path / "WFDBRecords"
    for stem in STEMS[:4]:
        copy_record(folder, stem, root / "20" / "200")
    heas = {s: copy_record(folder, s, root / "20" / "201") for s in STEMS[4:8]}
    write_val(heas["JS20004"], load_val(heas["JS20004"]).T.copy())  # [5000, 12]: transposed matrix
    heas["JS20005"].with_suffix(".mat").write_bytes(b"MATLAB 5.0 MAT-file, not really")
    edit_header(heas["JS20006"], lambda ls: [ln for ln in ls if "Dx" not in ln])  # no #Dx line
    # RECORDS lists a record whose files never arrived.
    (root / "20" / "201" / "RECORDS").write_text("JS20004\nJS20005\nJS20006\nJS20007\nJS20099\n")
    src = source("csn", root)
    assert src.keys()[-1] == "20/201/JS20099" and len(src.keys()) == 9
    with pytest.raises(DataError) as e:
        src.read("20/201/JS20006")
    assert e.value.reason == "bad Dx line" and "JS20006.hea" in str(e.value)

    store = build_store(src, tmp_path / "store", "csn", 250, 500)
    assert store.meta["skipped"] == {"bad Dx line": 1, "header/data mismatch": 1, "missing file": 1, "unreadable file": 1}
    assert sorted({row["record_id"] for row in store.index}) == STEMS[:4] + ["JS20007"]
    assert len(store) == 5 * 5  # 10 s at 250 Hz = five 2 s segments per record


def test_header_rate_other_than_the_datasets_is_a_named_skip(folder, tmp_path):
    hea = copy_record(folder, "JS20001", tmp_path / "20" / "200")
    edit_header(hea, lambda ls: [ls[0].replace("JS20001 12 500 ", "JS20001 12 1000 ")] + ls[1:])
    with pytest.raises(DataError, match="header says 1000 Hz, CSN records are 500 Hz") as e:
        source("csn", tmp_path).read("20/200/JS20001")
    assert e.value.reason == "unexpected sampling rate"
