"""WFDB / HDF5 / CSV readers on real PTB-XL records and copies damaged in named ways."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg_bench.errors import DataError
from ecg_bench.signals import io

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "sources"))
from layout_fixtures import flip_sample, ptbxl_record, real_signal, truncate, write_wfdb  # noqa: E402


@pytest.fixture()
def rec6002(shared_data, tmp_path) -> Path:
    """A private copy of PTB-XL record 6002 (header + samples)."""
    src = ptbxl_record(shared_data, 6002)
    for ext in (".hea", ".dat"):
        shutil.copyfile(src.with_name(src.name + ext), tmp_path / f"06002_hr{ext}")
    return tmp_path / "06002_hr"


def _reason(exc: pytest.ExceptionInfo) -> str:
    return getattr(exc.value, "reason", None)


def test_read_wfdb_real_record_matches_rdsamp(shared_data):
    wf = io.read_wfdb(ptbxl_record(shared_data, 6002), expect_leads=12)
    ref = real_signal(shared_data, 6002)
    assert wf.signal.shape == (12, 5000) and wf.signal.dtype == np.float32
    assert wf.fs == 500.0
    assert wf.leads == ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
    np.testing.assert_allclose(wf.signal, ref.T, atol=1e-6)
    # Header values: 1000 adu/mV and first samples 280, 175, -105 adu -> 0.28, 0.175, -0.105 mV.
    np.testing.assert_allclose(wf.signal[:3, 0], [0.28, 0.175, -0.105], atol=1e-6)


def test_truncated_dat(rec6002):
    truncate(rec6002.with_suffix(".dat"))
    with pytest.raises(DataError, match="needs 120000") as e:
        io.read_wfdb(rec6002)
    assert _reason(e) == io.TRUNCATED_FILE


def test_dat_longer_than_header(rec6002):
    dat = rec6002.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes() + bytes(24 * 10))  # 10 more frames than the header says
    with pytest.raises(DataError) as e:
        io.read_wfdb(rec6002)
    assert _reason(e) == io.HEADER_MISMATCH


def test_checksum_mismatch(rec6002):
    flip_sample(rec6002.with_suffix(".dat"))
    with pytest.raises(DataError, match="checksums") as e:
        io.read_wfdb(rec6002)
    assert _reason(e) == io.CHECKSUM_MISMATCH
    # Without verification the (damaged) samples are returned.
    assert io.read_wfdb(rec6002, verify_checksum=False).signal.shape == (12, 5000)


def test_missing_files_and_bad_header(rec6002):
    rec6002.with_suffix(".dat").unlink()
    with pytest.raises(DataError, match="signal file not found") as e:
        io.read_wfdb(rec6002)
    assert _reason(e) == io.MISSING_FILE
    with pytest.raises(DataError, match="header not found") as e:
        io.read_wfdb(rec6002.with_name("nope"))
    assert _reason(e) == io.MISSING_FILE
    rec6002.with_suffix(".hea").write_text("06002_hr twelve 500 5000\n")
    with pytest.raises(DataError) as e:
        io.read_wfdb(rec6002)
    assert _reason(e) == io.UNREADABLE_HEADER


def test_lead_count_units_and_nan(shared_data, tmp_path):
    sig = real_signal(shared_data, 6004)
    with pytest.raises(DataError, match="12 signals .*expected 8") as e:
        io.read_wfdb(ptbxl_record(shared_data, 6004), expect_leads=8)
    assert _reason(e) == io.WRONG_LEAD_COUNT

    # Microvolts are converted to mV.
    uv = tmp_path / "uv"
    wfdb.wrsamp(
        "uv",
        fs=500,
        units=["uV"] * 12,
        sig_name=[f"L{i}" for i in range(12)],
        p_signal=sig * 1000.0,
        fmt=["16"] * 12,
        adc_gain=[1.0] * 12,
        baseline=[0] * 12,
        write_dir=str(tmp_path),
    )
    np.testing.assert_allclose(io.read_wfdb(uv).signal, sig.T, atol=1e-6)

    (tmp_path / "uv.hea").write_text((tmp_path / "uv.hea").read_text().replace("/uV", "/degC"))
    with pytest.raises(DataError, match="degC") as e:
        io.read_wfdb(uv)
    assert _reason(e) == io.WRONG_UNITS

    # A lead stored as the format's invalid value comes back as NaN (the preprocessing policy decides).
    nan_sig = sig.copy()
    nan_sig[:, 7] = np.nan
    write_wfdb(tmp_path / "nanrec", nan_sig, 500, [f"L{i}" for i in range(12)])
    wf = io.read_wfdb(tmp_path / "nanrec")
    assert np.isnan(wf.signal[7]).all() and np.isfinite(np.delete(wf.signal, 7, axis=0)).all()


def test_hdf5_open_and_dataset_checks(tmp_path):
    import h5py

    good = tmp_path / "good.hdf5"
    with h5py.File(good, "w") as f:
        f.create_dataset("tracings", data=np.zeros((3, 4096, 12), np.float32))
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(DataError) as e:
        io.open_hdf5(bad)
    assert _reason(e) == io.UNREADABLE_FILE
    with pytest.raises(DataError) as e:
        io.open_hdf5(tmp_path / "absent.hdf5")
    assert _reason(e) == io.MISSING_FILE
    with io.open_hdf5(good) as f:
        assert io.hdf5_dataset(f, "tracings", 3, (12,)).shape == (3, 4096, 12)
        with pytest.raises(DataError, match="ending in") as e:
            io.hdf5_dataset(f, "tracings", 3, (8,))
        assert _reason(e) == io.UNREADABLE_FILE
        with pytest.raises(DataError, match="no dataset 'exam_id'"):
            io.hdf5_dataset(f, "exam_id", 1)


def test_csv_table_and_json_value(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,\n2,x\n")
    df = io.read_csv_table(tmp_path / "t.csv", ("a",))
    assert [io.json_value(v) for v in df["b"]] == [None, "x"]
    assert io.json_value(df["a"].iloc[0]) == 1 and type(io.json_value(df["a"].iloc[0])) is int
    with pytest.raises(DataError, match="missing column"):
        io.read_csv_table(tmp_path / "t.csv", ("a", "c"))
    with pytest.raises(FileNotFoundError, match="none.csv"):
        io.read_csv_table(tmp_path / "none.csv")


def test_fast_header_and_reader_match_wfdb(shared_data):
    """The direct format-16 path gives exactly what the wfdb package gives, header fields and samples."""
    for ecg_id in range(6000, 6010):
        rec = ptbxl_record(shared_data, ecg_id)
        fast = io._header(rec)
        ref = io._from_wfdb(wfdb.rdheader(str(rec)))
        assert fast.simple and not ref.simple
        for name in ("n_sig", "fs", "sig_len", "file_name", "fmt", "adc_gain", "baseline", "units", "checksum", "sig_name"):
            assert getattr(fast, name) == getattr(ref, name), (ecg_id, name)
        d1, p1 = io._read_simple(rec, fast)
        d2, p2 = io._read_general(rec, ref)
        np.testing.assert_array_equal(d1, d2)
        np.testing.assert_array_equal(p1, p2)


def test_other_formats_go_through_wfdb(shared_data, tmp_path):
    sig = real_signal(shared_data, 6009)
    sig[100:110, 2] = np.nan
    wfdb.wrsamp("r212", fs=500, units=["mV"] * 12, sig_name=[f"L{i}" for i in range(12)], p_signal=sig, fmt=["212"] * 12,
                adc_gain=[400.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))  # fmt: skip
    assert not io._header(tmp_path / "r212").simple
    wf = io.read_wfdb(tmp_path / "r212", expect_leads=12)
    np.testing.assert_allclose(wf.signal, sig.T, atol=1 / 800 + 1e-6, equal_nan=True)
    assert np.isnan(wf.signal[2, 100:110]).all() and np.isfinite(wf.signal[2, 110:]).all()


# ---------------------------------------------------------------------------------------------- bombs


@pytest.fixture()
def no_wfdb_reads(monkeypatch):
    """wfdb.rdheader / rdrecord replaced by functions that fail the test: the refusal must come first."""

    def refuse(*args, **kwargs):
        pytest.fail("wfdb was asked to parse/allocate a record the header already shows is too large")

    monkeypatch.setattr(wfdb, "rdheader", refuse)
    monkeypatch.setattr(wfdb, "rdrecord", refuse)


def test_header_claiming_1e8_leads_is_too_large_before_wfdb(tmp_path, no_wfdb_reads):
    rec = tmp_path / "r"
    rec.with_suffix(".hea").write_text("r 100000000 500 10\n")  # 19 bytes; wfdb.rdheader allocated 3.2 GB for it
    rec.with_suffix(".dat").write_bytes(b"\0" * 40)
    with pytest.raises(DataError, match=r"r.hea: 100,000,000 signals claimed; at most 64") as e:
        io.read_wfdb(rec)
    assert _reason(e) == io.TOO_LARGE == "too large"


def test_compressed_record_claiming_too_many_samples_is_too_large_before_wfdb(tmp_path, no_wfdb_reads):
    rec = tmp_path / "flac"  # format 508 (FLAC): the .dat size says nothing, so the sample count is capped
    lines = [f"flac 12 500 {io.MAX_RECORD_VALUES}"] + [f"flac.dat 508 200/mV 16 0 0 0 0 L{i}" for i in range(12)]
    rec.with_suffix(".hea").write_text("\n".join(lines) + "\n")
    rec.with_suffix(".dat").write_bytes(b"fLaC" + b"\0" * 60)
    with pytest.raises(DataError, match="values \\(samples x signals\\) claimed") as e:
        io.read_wfdb(rec)
    assert _reason(e) == io.TOO_LARGE


def test_header_file_larger_than_the_cap_is_not_read(tmp_path, monkeypatch, no_wfdb_reads):
    rec = tmp_path / "big"
    rec.with_suffix(".hea").write_text("big 1 500 10\n" + "#" * 2000 + "\n")
    monkeypatch.setenv("ECG_BENCH_MAX_HEADER_BYTES", "1000")  # lowered by the user (ecg_bench.limits)
    with pytest.raises(DataError, match="2,014-byte header") as e:
        io.read_wfdb(rec)
    assert _reason(e) == "too large"
