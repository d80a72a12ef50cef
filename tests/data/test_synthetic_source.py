"""The synthetic ground truth must be measurable from the signal, not just written in metadata."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from ecg_bench.config import DataConfig
from ecg_bench.data.record import LEADS
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.sources.synthetic import FS, HR_RANGES, generate_records
from config_helpers import data_config

LIMB = slice(0, 6)


def r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R apexes in lead II. Pan-Tompkins-like detection: 5-30 Hz band-pass, squared slope summed over
    the 12 leads (independent noise averages out), peaks >= 220 ms apart; then the largest
    band-passed lead-II value within 50 ms."""
    band = sosfiltfilt(butter(3, [5, 30], btype="band", fs=fs, output="sos"), signal, axis=1)
    energy = (np.gradient(band, axis=1) ** 2).sum(axis=0)
    peaks, _ = find_peaks(energy, height=0.3 * np.percentile(energy, 99.5), distance=int(0.22 * fs))
    w, ii = int(0.05 * fs), band[1]
    return np.array([max(p - w, 0) + int(np.argmax(ii[max(p - w, 0) : p + w])) for p in peaks])


def measure(record) -> dict[str, float]:
    fs = record.fs
    peaks = r_peaks(record.signal, fs)
    rr = np.diff(peaks) / fs
    hf = sosfiltfilt(butter(4, 70, btype="high", fs=fs, output="sos"), record.signal, axis=1)
    band = sosfiltfilt(butter(2, [1, 40], btype="band", fs=fs, output="sos"), record.signal, axis=1)
    w = int(0.06 * fs)
    qrs_ptp = [np.ptp(band[LIMB, max(p - w, 0) : p + w], axis=1).max() for p in peaks]
    return {
        "hr": 60.0 / rr.mean(),
        "rr_cv": rr.std() / rr.mean(),
        "hf_sd": float(hf.std(axis=1).mean()),
        "qrs_ptp": float(np.median(qrs_ptp)),
    }


@pytest.fixture(scope="module")
def measured(records):
    return [(r.metadata, measure(r)) for r in records]


def test_records_shape_ids_and_patients(records):
    assert len(records) == 60
    r = records[0]
    assert r.signal.shape == (12, int(10 * FS)) and r.signal.dtype == np.float32 and r.fs == FS
    assert r.leads == LEADS and r.record_id == "synth-r00000" and r.patient_id == "synth-p0000"
    assert records[1].patient_id == "synth-p0000" and records[2].patient_id == "synth-p0001"
    assert len({r.record_id for r in records}) == 60
    for r in records:
        json.dumps(r.metadata)  # JSON-serialisable
        assert np.isfinite(r.signal).all()


def test_attributes_are_balanced(records):
    n = len(records)
    cats = Counter(r.metadata["hr_category"] for r in records)
    assert set(cats.values()) == {n // 3}
    for key in ("rhythm", "noisy", "low_voltage"):
        assert set(Counter(r.metadata[key] for r in records).values()) == {n // 2}, key
    for r in records:
        lo, hi = HR_RANGES[r.metadata["hr_category"]]
        assert lo <= r.metadata["heart_rate"] <= hi
        assert not 55 < r.metadata["heart_rate"] < 65 and not 95 < r.metadata["heart_rate"] < 105


def test_heart_rate_measurable_on_clean_regular_records(measured):
    checked = 0
    for m, x in measured:
        if m["rhythm"] == "regular" and not m["noisy"]:
            assert x["hr"] == pytest.approx(m["heart_rate"], abs=3.0), m
            checked += 1
    assert checked >= 10


def test_heart_rate_category_measurable_on_all_regular_records(measured):
    for m, x in measured:
        if m["rhythm"] == "regular":
            measured_cat = "bradycardia" if x["hr"] < 60 else "tachycardia" if x["hr"] > 100 else "normal"
            assert measured_cat == m["hr_category"], (m, x)


def test_rr_variability_separates_irregular(measured):
    regular = [x["rr_cv"] for m, x in measured if m["rhythm"] == "regular"]
    irregular = [x["rr_cv"] for m, x in measured if m["rhythm"] == "irregular"]
    assert max(regular) < 0.05 < min(irregular)


def test_high_frequency_residual_separates_noisy(measured):
    noisy = [x["hf_sd"] for m, x in measured if m["noisy"]]
    clean = [x["hf_sd"] for m, x in measured if not m["noisy"]]
    assert max(clean) < 0.015 < 0.035 < min(noisy)


def test_qrs_amplitude_separates_low_voltage(measured):
    low = [x["qrs_ptp"] for m, x in measured if m["low_voltage"]]
    normal = [x["qrs_ptp"] for m, x in measured if not m["low_voltage"]]
    assert max(low) < 0.8 < 1.0 < min(normal)


def test_no_p_waves_in_irregular_records(records):
    # Sinus beats have a P wave 140-180 ms before the R peak; AF has none, only small f waves.
    def p_amplitude(r):
        ii = sosfiltfilt(butter(2, [1, 40], btype="band", fs=r.fs, output="sos"), r.signal[1])
        peaks = r_peaks(r.signal, r.fs)
        a, b = int(0.20 * r.fs), int(0.12 * r.fs)
        return np.median([ii[p - a : p - b].max() - ii[p - b] for p in peaks if p > a])

    clean = [r for r in records if not r.metadata["noisy"]]
    sinus = [p_amplitude(r) for r in clean if r.metadata["rhythm"] == "regular"]
    af = [p_amplitude(r) for r in clean if r.metadata["rhythm"] == "irregular"]
    assert np.median(sinus) > 2 * np.median(af)


def test_leads_look_plausible(records):
    r = next(r for r in records if not r.metadata["noisy"] and not r.metadata["low_voltage"])
    peaks = r_peaks(r.signal, r.fs)
    at_r = r.signal[:, peaks].mean(axis=1)
    assert at_r[LEADS.index("II")] > 0.5
    assert at_r[LEADS.index("aVR")] < -0.3  # aVR inverted
    assert at_r[LEADS.index("V1")] < 0 < at_r[LEADS.index("V6")]  # rS in V1, R in V6
    # Einthoven: III = II - I (up to the independent per-lead noise)
    s = r.signal
    assert np.abs(s[2] - (s[1] - s[0])).mean() < 0.03


def test_reports_and_labels_follow_attributes(records):
    for r in records:
        m = r.metadata
        assert f"{m['heart_rate']:.0f} bpm" in r.report
        assert ("Atrial fibrillation" in r.report) == (m["rhythm"] == "irregular")
        assert ("atrial fibrillation" in r.labels) == (m["rhythm"] == "irregular")
        assert ("Low QRS voltage." in r.report) == m["low_voltage"] == ("low QRS voltage" in r.labels)
        assert ("Noisy recording." in r.report) == m["noisy"] == ("noisy recording" in r.labels)
        assert ("tachycardia" in r.labels) == (m["hr_category"] == "tachycardia")


def test_deterministic_and_seeded():
    a = list(generate_records(3, 2, seed=5))
    b = list(generate_records(3, 2, seed=5))
    c = list(generate_records(3, 2, seed=6))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.signal, y.signal)
        assert x.metadata == y.metadata
    assert not np.array_equal(a[0].signal, c[0].signal)


def test_patients_have_their_own_morphology():
    recs = list(generate_records(4, 3, seed=1))

    def qrs_shape(r):  # mean lead profile at the R peaks, normalised by the QRS scale
        peaks = r_peaks(r.signal, r.fs)
        return r.signal[:, peaks].mean(axis=1) / r.metadata["qrs_scale"]

    clean = [r for r in recs if not r.metadata["noisy"]]
    by_patient = {}
    for r in clean:
        by_patient.setdefault(r.patient_id, []).append(qrs_shape(r))
    within = [np.linalg.norm(v[0] - v[1]) for v in by_patient.values() if len(v) >= 2]
    means = [np.mean(v, axis=0) for v in by_patient.values()]
    between = [np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1 :]]
    assert within and between and np.median(within) < np.median(between)


def test_registered_source_reads_config():
    assert "synthetic" in SOURCES
    recs = list(SOURCES.get("synthetic")(data_config(num_patients=3, records_per_patient=1, seed=2)))
    assert [r.patient_id for r in recs] == ["synth-p0000", "synth-p0001", "synth-p0002"]
