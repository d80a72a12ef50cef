"""CPSC 2018 (CinC 2020 layout) read from the real records in ../shared/data/cpsc."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import scipy.io
import wfdb
from cinc_fixtures import copy_record, edit_header, load_val, source, write_val

from ecg_bench.data.record import LEADS
from ecg_bench.data.store import build_store
from ecg_bench.errors import DataError

# From the real headers: samples, #Age, #Sex, #Dx names (dx_mapping_*.csv) of A1980 ... A1989.
REAL = {
    "A1980": (5000, 52, "male", ["premature atrial contraction"]),
    "A1981": (7950, 48, "female", ["st depression"]),
    "A1982": (5000, 89, "male", ["1st degree av block"]),
    "A1983": (7500, 49, "male", ["sinus rhythm"]),
    "A1984": (9500, 23, "female", ["st depression"]),
    "A1985": (5517, 26, "female", ["st depression"]),
    "A1986": (21500, 53, "female", ["right bundle branch block"]),
    "A1987": (6778, 59, "male", ["right bundle branch block"]),
    "A1988": (27157, 49, "female", ["1st degree av block"]),
    "A1989": (8500, 34, "female", ["1st degree av block"]),
}


@pytest.fixture(scope="module")
def g1(shared_data):
    return shared_data / "cpsc" / "cpsc_2018" / "g1"


@pytest.fixture(scope="module")
def cpsc(shared_data):
    return source("cpsc2018", shared_data / "cpsc")


@pytest.fixture(scope="module")
def records(cpsc):
    return {r.record_id: r for r in (cpsc.read(k) for k in cpsc.keys())}


def test_keys_are_sorted_relative_stems(cpsc, g1):
    assert cpsc.keys() == [f"cpsc_2018/g1/{stem}" for stem in REAL]
    assert source("cpsc2018", g1).keys() == list(REAL)  # records directly in data_dir


def test_real_samples_leads_metadata_and_snomed_names(records):
    assert sorted(records) == list(REAL)
    for rid, (n, age, sex, names) in REAL.items():
        r = records[rid]
        assert r.signal.shape == (12, n) and r.signal.dtype == np.float32 and r.fs == 500.0
        assert r.leads == LEADS and r.patient_id == rid
        assert r.metadata["age"] == age and r.metadata["sex"] == sex
        assert r.labels == names
    a1980 = records["A1980"]
    assert a1980.metadata["dx_codes"] == ["284470004"] and a1980.metadata["dx_abbreviations"] == ["PAC"]
    assert a1980.report == "Premature atrial contraction."
    assert records["A1982"].report == "1st degree AV block."
    assert records["A1981"].report == "ST depression."
    assert records["A1983"].labels == ["sinus rhythm"] and records["A1983"].metadata["dx_codes"] == ["426783006"]


def test_amplitudes_in_millivolts_match_val_over_gain_and_wfdb(records, g1):
    for rid, r in records.items():
        val = scipy.io.loadmat(g1 / f"{rid}.mat")["val"]
        np.testing.assert_allclose(r.signal, val / 1000.0, rtol=0, atol=1e-6)  # header: 1000/mV, baseline 0
    # The header's first values (202 adu in lead I, 1119 in V2) in mV, and wfdb's own reading of the .mat.
    assert records["A1980"].signal[0, 0] == pytest.approx(0.202) and records["A1980"].signal[7, 0] == pytest.approx(1.119)
    ref = wfdb.rdrecord(str(g1 / "A1986"))
    assert ref.sig_name == list(records["A1986"].leads)
    np.testing.assert_allclose(records["A1986"].signal, ref.p_signal.T, rtol=0, atol=1e-6)
    assert 0.05 < np.abs(records["A1986"].signal).max() < 10  # plausible ECG millivolts, not ADC units


def test_source_pickles_and_reads_the_same(cpsc, records):
    clone = pickle.loads(pickle.dumps(cpsc))
    again = clone.read("cpsc_2018/g1/A1988")
    np.testing.assert_array_equal(again.signal, records["A1988"].signal)
    assert again.labels == records["A1988"].labels


def test_store_from_real_records(cpsc, tmp_path):
    store = build_store(cpsc, tmp_path / "store", "cpsc2018", 250, 500)
    # 500 -> 250 Hz halves the length (rounded up by polyphase resampling); 2 s segments, tail dropped.
    expected = {rid: math.ceil(n / 2) // 500 for rid, (n, *_rest) in REAL.items()}
    assert store.meta["num_records"] == 10 and store.meta["skipped"] == {}
    assert len(store) == sum(expected.values()) == 100
    for rid, n_segments in expected.items():
        rows = [store.index[i] for i in store.by_record(rid)]
        assert len(rows) == n_segments and {row["patient_id"] for row in rows} == {rid}
        assert rows[0]["labels"] == REAL[rid][3]
    first = store.signal(store.by_record("A1980")[0])
    assert first.shape == (12, 500) and abs(float(first[0, 0]) - 0.202) < 0.05


@pytest.fixture
def damaged(g1, tmp_path):
    """A CPSC folder (g1, g2) with two good records and one record per named kind of damage."""
    root = tmp_path / "cpsc_2018"
    for stem in ("A1980", "A1983"):
        copy_record(g1, stem, root / "g1")
    damaged_stems = [stem for stem in REAL if stem not in ("A1980", "A1983")]
    bad = {stem: copy_record(g1, stem, root / ("g1" if stem < "A1984" else "g2")) for stem in damaged_stems}

    data = bad["A1981"].with_suffix(".mat").read_bytes()
    bad["A1981"].with_suffix(".mat").write_bytes(data[: len(data) // 2])  # truncated download
    write_val(bad["A1982"], load_val(bad["A1982"])[:, :4000])  # header says 5000 samples
    write_val(bad["A1984"], load_val(bad["A1984"])[:11])  # 11 leads, header still 12
    edit_header(bad["A1985"], lambda ls: [ls[0].replace(" 12 ", " 11 ")] + ls[1:12] + ls[13:])  # V6 dropped consistently
    write_val(bad["A1985"], load_val(bad["A1985"])[:11])
    bad["A1986"].with_suffix(".mat").unlink()
    bad["A1987"].unlink()  # .mat without .hea
    nan_val = load_val(bad["A1988"]).astype(np.float64)
    nan_val[3] = np.nan  # aVR electrode lost for the whole record
    write_val(bad["A1988"], nan_val)
    corrupt = load_val(bad["A1989"]).copy()
    corrupt[4, 1234] += 7  # one flipped sample: shape fine, checksum not
    write_val(bad["A1989"], corrupt)
    # Header-only damage on copies of good records: an unparseable #Dx, and a code the table does not know.
    dx = copy_record(g1, "A1983", root / "g2", new_stem="A1990")
    edit_header(dx, lambda ls: [ln.replace("#Dx: 426783006", "#Dx: sinus rhythm") for ln in ls])
    unknown = copy_record(g1, "A1980", root / "g2", new_stem="A1991")
    edit_header(unknown, lambda ls: [ln.replace("#Dx: 284470004", "#Dx: 284470004,999999999") for ln in ls])
    return root


READ_ERRORS = {
    "g1/A1981": "unreadable file",
    "g1/A1982": "header/data mismatch",
    "g2/A1984": "header/data mismatch",
    "g2/A1985": "wrong lead count",
    "g2/A1986": "missing file",
    "g2/A1987": "missing file",
    "g2/A1989": "header/data mismatch",
    "g2/A1990": "bad Dx line",
}


def test_each_damage_is_a_named_read_error(damaged):
    src = source("cpsc2018", damaged)
    assert src.keys() == ["g1/A1980", "g1/A1981", "g1/A1982", "g1/A1983"] + [f"g2/A19{n}" for n in range(84, 92)]
    for key, reason in READ_ERRORS.items():
        with pytest.raises(DataError) as e:
            src.read(key)
        assert e.value.reason == reason, (key, str(e.value))
    assert "4000" in _message(src, "g1/A1982") and "V6" in _message(src, "g2/A1985")
    assert "lead aVL checksum" in _message(src, "g2/A1989")
    assert np.isnan(src.read("g2/A1988").signal[3]).all()  # NaNs pass through: the store's NaN policy decides
    assert source("cpsc2018", damaged, verify_checksums=False).read("g2/A1989").signal.shape == (12, 8500)


def _message(src, key: str) -> str:
    with pytest.raises(DataError) as e:
        src.read(key)
    return str(e.value)


def test_store_skips_damaged_records_by_reason_and_keeps_good_ones(damaged, tmp_path):
    store = build_store(source("cpsc2018", damaged), tmp_path / "store", "cpsc2018", 250, 500)
    assert store.meta["skipped"] == {
        "all-NaN lead": 1,
        "bad Dx line": 1,
        "header/data mismatch": 3,
        "missing file": 2,
        "unreadable file": 1,
        "wrong lead count": 1,
    }
    assert {r["key"]: r["reason"] for r in store.meta["skipped_records"]} == {
        **READ_ERRORS,
        "g2/A1988": "all-NaN lead",
        "g2/A1990": "bad Dx line",
    }
    landed = {row["record_id"]: row for row in store.index}
    assert sorted(landed) == ["A1980", "A1983", "A1991"] and store.meta["num_records"] == 3
    assert len(store.by_record("A1980")) == 5 and len(store.by_record("A1983")) == 7
    assert landed["A1991"]["labels"] == ["premature atrial contraction", "SNOMED 999999999"]
    assert landed["A1991"]["report"] == "Premature atrial contraction. SNOMED 999999999."


def test_header_rate_other_than_the_datasets_is_a_named_skip(g1, tmp_path):
    """One rule for every reader (sources.base): a header that gives another rate than the dataset's is skipped."""
    for stem in ("A1980", "A1983"):
        copy_record(g1, stem, tmp_path / "data" / "g1")
    edit_header(tmp_path / "data" / "g1" / "A1983.hea", lambda ls: [ls[0].replace("A1983 12 500 ", "A1983 12 250 ")] + ls[1:])
    src = source("cpsc2018", tmp_path / "data")
    with pytest.raises(DataError, match=r"A1983.hea: header says 250 Hz, CPSC 2018 records are 500 Hz") as e:
        src.read("g1/A1983")
    assert e.value.reason == "unexpected sampling rate"
    store = build_store(src, tmp_path / "store", "cpsc2018", 250, 500, workers=1)
    assert store.meta["skipped"] == {"unexpected sampling rate": 1} and store.meta["num_records"] == 1
