"""Synthetic 12-lead ECGs with known, measurable ground truth (the "embedded default" data source).

Each beat is a sum of Gaussian P, Q, R, S and T waves on the time axis. Every wave has a heart-dipole
direction (x = left, y = inferior, z = anterior); a lead sees the wave scaled by the projection of
that direction onto the lead vector. Limb leads follow Einthoven / Goldberger (III = II - I,
aVR = -(I + II) / 2, ...) so aVR comes out inverted, V1 shows an rS and V6 a qR.

Ground truth per record, balanced over the dataset so that no answer wins by accident:

- ``hr_category`` (bradycardia / normal / tachycardia) sampled uniformly first, then ``heart_rate``
  uniform inside it and >= 5 bpm away from the 60 and 100 bpm thresholds;
- ``rhythm``: regular (1 % RR variability, P waves) or irregular (atrial-fibrillation-like: RR
  jittered by +-20-35 % independently, no P waves, 4-8 Hz fibrillatory baseline);
- ``noisy``: white noise (0.05-0.1 mV), baseline wander (0.15-0.5 Hz, 0.2-0.4 mV) and 50/60 Hz hum;
- ``low_voltage``: QRS amplitudes scaled by 0.3-0.45 (else 0.9-1.3).

Patients have their own baseline morphology (wave amplitudes, widths, electrical axis, PR interval);
their records differ in the attributes. Everything is seeded: the balanced attribute table depends
on ``(seed, number of records)``, a patient's morphology on ``(seed, patient)`` and record ``i``'s
waveform and noise on ``(seed, i)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecg_bench.config import DataConfig, SourceOptions
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.sources.base import SOURCES, Source, data_error

FS = 500.0
"""Sampling rate of the generated records (Hz)."""
DURATION_S = 10.0
"""Length of a generated record (s)."""

HR_CATEGORIES = ("bradycardia", "normal", "tachycardia")
HR_RANGES = {"bradycardia": (40.0, 55.0), "normal": (65.0, 95.0), "tachycardia": (105.0, 150.0)}
"""Heart-rate ranges (bpm) per category: 5 bpm away from the 60 / 100 thresholds."""
RHYTHMS = ("regular", "irregular")

# Wave order: P, Q, R, S, T. Amplitude is the dipole magnitude in mV; centre is relative to the
# R peak in seconds (the T centre is computed from the RR interval, see _t_centre).
_WAVE_AMP = np.array([0.18, 0.12, 1.25, 0.45, 0.38])
_WAVE_CENTRE = np.array([np.nan, -0.028, 0.0, 0.028, np.nan])
_WAVE_SIGMA = np.array([0.025, 0.010, 0.011, 0.011, 0.045])
_WAVE_DIR = np.array(
    [
        [0.55, 0.80, 0.25],  # P: atria depolarise leftward and down
        [-0.75, -0.15, 0.65],  # Q: septum, left -> right and forward (q in I/V6, r in V1)
        [0.55, 0.75, -0.20],  # R: main ventricular mass, left, down, slightly back
        [-0.45, -0.55, -0.70],  # S: late basal activation, right, up, back
        [0.60, 0.55, 0.45],  # T: concordant with R in most leads
    ]
)
_WAVE_DIR = _WAVE_DIR / np.linalg.norm(_WAVE_DIR, axis=1, keepdims=True)
_QRS = np.array([False, True, True, True, False])
_ATRIAL_DIR = np.array([0.25, 0.55, 0.80])  # fibrillatory waves show best in V1 and the inferior leads


def _lead_matrix() -> np.ndarray:
    """[12, 3] projection of a dipole (x left, y inferior, z anterior) onto LEADS."""
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([0.5, np.sqrt(3) / 2, 0.0])
    limb = [
        lead_i,
        lead_ii,
        lead_ii - lead_i,  # III
        -(lead_i + lead_ii) / 2,  # aVR
        lead_i - lead_ii / 2,  # aVL
        lead_ii - lead_i / 2,  # aVF
    ]
    # Chest leads: angle in the horizontal plane from the left (V6) towards the front (V1, V2).
    angles = np.deg2rad([115.0, 95.0, 75.0, 60.0, 30.0, 0.0])
    gains = np.array([0.9, 1.3, 1.4, 1.4, 1.2, 1.0])
    chest = [g * np.array([np.cos(a), 0.1, np.sin(a)]) for a, g in zip(angles, gains, strict=True)]
    return np.stack(limb + chest)


_LEAD_MATRIX = _lead_matrix()


@dataclass(frozen=True)
class Morphology:
    """A patient's baseline beat shape."""

    amp: np.ndarray
    """[5] dipole magnitude of P, Q, R, S, T (mV)."""
    sigma: np.ndarray
    """[5] Gaussian widths (s)."""
    direction: np.ndarray
    """[5, 3] unit dipole directions after the patient's axis rotation."""
    pr: float
    """PR interval (s): P centre before the R peak."""


def _rotation(frontal: float, horizontal: float) -> np.ndarray:
    """Rotate about z (frontal-plane axis shift) then about y (horizontal-plane rotation)."""
    cf, sf, ch, sh = np.cos(frontal), np.sin(frontal), np.cos(horizontal), np.sin(horizontal)
    rz = np.array([[cf, -sf, 0.0], [sf, cf, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[ch, 0.0, sh], [0.0, 1.0, 0.0], [-sh, 0.0, ch]])
    return ry @ rz


def patient_morphology(rng: np.random.Generator) -> Morphology:
    """Sample a patient's baseline: +-15 % amplitudes, +-10 % widths, +-20 deg axis, PR 0.14-0.18 s."""
    rot = _rotation(np.deg2rad(rng.uniform(-20, 20)), np.deg2rad(rng.uniform(-15, 15)))
    return Morphology(
        amp=_WAVE_AMP * rng.uniform(0.85, 1.15, size=5),
        sigma=_WAVE_SIGMA * rng.uniform(0.9, 1.1, size=5),
        direction=_WAVE_DIR @ rot.T,
        pr=float(rng.uniform(0.14, 0.18)),
    )


def sample_attributes(num_records: int, seed: int) -> list[dict[str, Any]]:
    """Balanced ground truth for ``num_records`` records: every value of every attribute appears
    equally often (up to one), independently shuffled per attribute."""
    rng = np.random.default_rng([seed, 2])

    def balanced(k: int) -> np.ndarray:
        return rng.permutation(np.resize(np.arange(k), num_records))

    cat, rhythm, noisy, low = balanced(3), balanced(2), balanced(2), balanced(2)
    out = []
    for i in range(num_records):
        category = HR_CATEGORIES[cat[i]]
        lo, hi = HR_RANGES[category]
        out.append(
            {
                "heart_rate": round(float(rng.uniform(lo, hi)), 1),
                "hr_category": category,
                "rhythm": RHYTHMS[rhythm[i]],
                "noisy": bool(noisy[i]),
                "low_voltage": bool(low[i]),
            }
        )
    return out


def _beat_times(rng: np.random.Generator, heart_rate: float, irregular: bool, duration: float):
    """R-peak times (s) covering [-1, duration + 1] and the RR interval that precedes each beat."""
    rr0 = 60.0 / heart_rate
    n = int(np.ceil((duration + 2.0) / (rr0 * 0.6))) + 2
    if irregular:
        jitter = float(rng.uniform(0.20, 0.35))
        rr = rr0 * (1.0 + rng.uniform(-jitter, jitter, size=n))
        rr = np.maximum(rr, 0.25)
    else:
        jitter = 0.0
        rr = rr0 * (1.0 + 0.01 * rng.standard_normal(n))
    times = -1.0 - rng.uniform(0, rr0) + np.cumsum(rr)
    keep = times < duration + 1.0
    return times[keep], rr[keep], jitter


def synth_signal(
    attrs: dict[str, Any], morph: Morphology, rng: np.random.Generator, fs: float = FS, duration: float = DURATION_S
) -> tuple[np.ndarray, dict[str, Any]]:
    """One record's ``[12, samples]`` float32 signal in mV (LEADS order) and its generation details."""
    t = np.arange(int(round(duration * fs))) / fs
    irregular = attrs["rhythm"] == "irregular"
    beats, rr, jitter = _beat_times(rng, attrs["heart_rate"], irregular, duration)

    qrs_scale = float(rng.uniform(0.3, 0.45) if attrs["low_voltage"] else rng.uniform(0.9, 1.3))
    amp = morph.amp * np.where(_QRS, qrs_scale, 1.0)
    if irregular:
        amp = amp * np.array([0.0, 1, 1, 1, 1])  # no P waves in atrial fibrillation
    # Centres [5, beats]: QT shortens with rate (Bazett, QTc 0.40 s); the T peak sits ~90 ms before its end.
    centre = np.empty((5, beats.size))
    centre[:] = _WAVE_CENTRE[:, None]
    centre[0] = -morph.pr
    centre[4] = 0.40 * np.sqrt(rr) - 0.09
    centre = centre + beats[None, :]
    # Waves [5, samples]: each beat's Gaussian is evaluated on its +-4.5 sigma window only and
    # scattered in with bincount (overlapping beats add up).
    n = t.size
    waves = np.zeros((5, n))
    for w in range(5):
        if amp[w] == 0.0:
            continue
        half = int(np.ceil(4.5 * morph.sigma[w] * fs))
        idx = np.rint(centre[w] * fs).astype(np.int64)[:, None] + np.arange(-half, half + 1)
        z = (idx / fs - centre[w][:, None]) / morph.sigma[w]
        ok = (idx >= 0) & (idx < n)
        waves[w] = amp[w] * np.bincount(idx[ok], weights=np.exp(-0.5 * z[ok] ** 2), minlength=n)
    sig = (_LEAD_MATRIX @ morph.direction.T) @ waves  # [12, 5] @ [5, samples]

    details: dict[str, Any] = {"qrs_scale": round(qrs_scale, 4), "rr_jitter": round(jitter, 4)}
    n_leads = sig.shape[0]
    if irregular:
        f1, f2 = rng.uniform(4.0, 8.0, size=2)
        ph = rng.uniform(0, 2 * np.pi, size=2)
        f_amp = float(rng.uniform(0.03, 0.08))
        fwave = f_amp * (np.sin(2 * np.pi * f1 * t + ph[0]) + 0.5 * np.sin(2 * np.pi * f2 * t + ph[1]))
        sig += (_LEAD_MATRIX @ _ATRIAL_DIR)[:, None] * fwave[None, :]
        details["f_wave_mv"] = round(f_amp, 4)
    if attrs["noisy"]:
        noise_sd = float(rng.uniform(0.05, 0.1))
        wander_f = float(rng.uniform(0.15, 0.5))
        wander_a = rng.uniform(0.2, 0.4, size=(n_leads, 1))
        wander_ph = rng.uniform(0, 2 * np.pi, size=(n_leads, 1))
        hum_f = float(rng.choice([50.0, 60.0]))
        hum_a = float(rng.uniform(0.02, 0.05)) * rng.uniform(0.5, 1.0, size=(n_leads, 1))
        sig += wander_a * np.sin(2 * np.pi * wander_f * t + wander_ph)
        sig += hum_a * np.sin(2 * np.pi * hum_f * t + rng.uniform(0, 2 * np.pi))
        details.update(wander_hz=round(wander_f, 3), hum_hz=hum_f)
    else:
        noise_sd = float(rng.uniform(0.005, 0.01))
    sig += noise_sd * rng.standard_normal(sig.shape)
    details["noise_sd"] = round(noise_sd, 4)
    return sig.astype(np.float32), details


def labels_of(attrs: dict[str, Any]) -> list[str]:
    """Diagnostic statements for the ground truth (names, not codes)."""
    labels = ["sinus rhythm" if attrs["rhythm"] == "regular" else "atrial fibrillation"]
    if attrs["hr_category"] != "normal":
        labels.append(attrs["hr_category"])
    if attrs["low_voltage"]:
        labels.append("low QRS voltage")
    if attrs["noisy"]:
        labels.append("noisy recording")
    return labels


def report_of(attrs: dict[str, Any]) -> str:
    """English report, e.g. ``"Sinus tachycardia at 112 bpm. Low QRS voltage. Noisy recording."``."""
    hr = f"{attrs['heart_rate']:.0f} bpm"
    cat = attrs["hr_category"]
    if attrs["rhythm"] == "regular":
        rhythm = {"bradycardia": "Sinus bradycardia", "normal": "Sinus rhythm", "tachycardia": "Sinus tachycardia"}[cat]
        parts = [f"{rhythm} at {hr}."]
    else:
        rate = {"bradycardia": "slow", "normal": "normal", "tachycardia": "rapid"}[cat]
        parts = [f"Atrial fibrillation with a {rate} ventricular rate at {hr}."]
    if attrs["low_voltage"]:
        parts.append("Low QRS voltage.")
    if attrs["noisy"]:
        parts.append("Noisy recording.")
    return " ".join(parts)


def _record(i: int, records_per_patient: int, seed: int, all_attrs, fs: float, duration: float) -> ECGRecord:
    p = i // records_per_patient
    morph = patient_morphology(np.random.default_rng([seed, 0, p]))
    attrs = all_attrs[i]
    signal, details = synth_signal(attrs, morph, np.random.default_rng([seed, 1, i]), fs, duration)
    return ECGRecord(
        record_id=f"synth-r{i:05d}",
        patient_id=f"synth-p{p:04d}",
        signal=signal,
        fs=fs,
        leads=LEADS,
        report=report_of(attrs),
        labels=labels_of(attrs),
        metadata={**attrs, **details, "synthetic": True},
    )


def generate_records(
    num_patients: int, records_per_patient: int, seed: int = 0, fs: float = FS, duration: float = DURATION_S
) -> Iterator[ECGRecord]:
    """Yield ``num_patients * records_per_patient`` synthetic records, patient by patient."""
    if num_patients < 1 or records_per_patient < 1:
        raise ValueError(f"num_patients and records_per_patient must be >= 1, got {num_patients}, {records_per_patient}")
    all_attrs = sample_attributes(num_patients * records_per_patient, seed)
    for i in range(num_patients * records_per_patient):
        yield _record(i, records_per_patient, seed, all_attrs, fs, duration)


@dataclass
class SyntheticOptions(SourceOptions):
    """Synthetic ECGs made on the fly (no download)."""

    num_patients: int = 120
    """Number of synthetic patients."""
    records_per_patient: int = 2
    """ECG records per patient."""

    def problems(self) -> list[str]:
        return [f"{n} must be >= 1, got {getattr(self, n)}" for n in ("num_patients", "records_per_patient") if getattr(self, n) < 1]


@SOURCES.register("synthetic", options=SyntheticOptions)
class Synthetic(Source):
    """``num_patients`` x ``records_per_patient`` (data.source options) synthetic 10 s, 500 Hz records seeded by ``cfg.seed``.

    Keys are record numbers ("0", "1", ...); record ``i`` is generated on its own, so any subset of
    keys can be read in any process in any order and gives the same records as ``generate_records``.
    """

    options_type = SyntheticOptions

    native_fs = FS

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        opts = self.opts
        if opts.num_patients < 1 or opts.records_per_patient < 1:
            raise ValueError(
                f"num_patients and records_per_patient must be >= 1, got {opts.num_patients}, {opts.records_per_patient}"
            )
        self._attrs: list[dict[str, Any]] | None = None

    def keys(self) -> list[str]:
        return [str(i) for i in range(self.opts.num_patients * self.opts.records_per_patient)]

    def read(self, key: str) -> ECGRecord:
        c, o = self.cfg, self.opts
        n = o.num_patients * o.records_per_patient
        if not key.isdigit() or int(key) >= n:
            raise data_error("unknown record", f"synthetic record key {key!r}: expected an integer in [0, {n})")
        if self._attrs is None:
            self._attrs = sample_attributes(n, c.seed)
        return _record(int(key), o.records_per_patient, c.seed, self._attrs, FS, DURATION_S)

    def settings(self) -> dict:
        c, o = self.cfg, self.opts
        return {"num_patients": o.num_patients, "records_per_patient": o.records_per_patient, "seed": c.seed}

    def fingerprint(self) -> dict:
        """Generated, not read: the settings are all the records depend on."""
        return {"settings": self.settings()}
