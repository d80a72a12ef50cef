"""Evaluation conditions in the signal domain: shuffled pairs across patients, leads keep only theirs,
noise has the SNR it is asked for, and names and options are checked with the valid ones listed."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_bench.config import RunConfig, build
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.data.record import LEADS
from ecg_bench.errors import ConfigError, DataError, UnknownNameError
from ecg_bench.evaluation.conditions import CONDITIONS, LeadsOptions, NoiseOptions, ShuffledOptions, build_condition
from ecg_bench.representations.signal import SignalRepresentation


@pytest.fixture(scope="module")
def ds(tiny_store, tiny_items):
    return ConversationDataset(tiny_items, tiny_store, SignalRepresentation())


def _all(cond, ds):
    cond.prepare(ds.items)
    return [cond.signals(i, ds.signals) for i in range(len(ds))]


def test_registry_holds_every_condition_with_an_options_dataclass():
    assert {"leads", "no_signal", "noise", "real", "shuffled", "zeros"} <= set(CONDITIONS.names())
    for name in CONDITIONS:
        cond = build_condition(name)
        assert isinstance(cond.options, CONDITIONS.options(name)) and cond.name == name
    with pytest.raises(UnknownNameError, match="valid condition names: " + ", ".join(CONDITIONS.names())):
        build_condition("shuffle")


def test_real_zeros_no_signal(ds):
    real, zeros, none = (_all(build_condition(n), ds) for n in ("real", "zeros", "no_signal"))
    for i, (r, z, n) in enumerate(zip(real, zeros, none)):
        assert np.array_equal(r, ds.signals(i)) and z.shape == r.shape and not z.any() and n is None


def test_shuffled_pairs_every_item_with_another_patients_ecg(ds):
    cond = build_condition(ShuffledOptions(seed=1))
    got = _all(cond, ds)
    own = {seg: it["patient_id"] for it in ds.items for seg in it["segment_ids"]}
    used = set()
    for i, (it, x) in enumerate(zip(ds.items, got)):
        donor = ds.items[cond.donor[i]]
        assert donor["patient_id"] != it["patient_id"]  # never this patient's own ECG
        assert np.array_equal(x, ds.signals(cond.donor[i])[: len(it["segment_ids"])])
        assert x.shape == ds.signals(i).shape and not np.array_equal(x, ds.signals(i))
        assert own[donor["segment_ids"][0]] != it["patient_id"]
        used.add(donor["patient_id"])
    assert len(used) == len({it["patient_id"] for it in ds.items})  # every patient's ECG is shown to someone
    again = build_condition(ShuffledOptions(seed=1))
    other = build_condition(ShuffledOptions(seed=2))
    assert [np.array_equal(a, b) for a, b in zip(got, _all(again, ds))] == [True] * len(ds)  # seeded
    assert _all(other, ds) and other.donor != cond.donor


def test_shuffled_needs_two_patients(ds):
    one = [it for it in ds.items if it["patient_id"] == ds.items[0]["patient_id"]]
    with pytest.raises(DataError, match="at least 2"):
        build_condition("shuffled").prepare(one)


def test_leads_keeps_only_the_named_leads(ds):
    for leads, kept in ((["I"], [0]), (["limb"], list(range(6))), (["V1", "aVF"], [5, 6])):
        for i, x in enumerate(_all(build_condition(LeadsOptions(leads=leads)), ds)):
            nonzero = [k for k in range(len(LEADS)) if x[:, k].any()]
            assert nonzero == kept
            assert np.array_equal(x[:, kept], ds.signals(i)[:, kept])


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_noise_has_the_requested_snr(ds, snr_db):
    cfg = NoiseOptions(snr_db=snr_db, seed=5)
    got = _all(build_condition(cfg), ds)
    measured = []
    for i, x in enumerate(got):
        clean = ds.signals(i)
        noise = x - clean
        sig = np.square(clean - clean.mean(-1, keepdims=True)).mean(-1)
        live = sig > 0
        measured.append(10 * np.log10(sig[live] / np.square(noise).mean(-1)[live]))
    measured = np.concatenate(measured)
    assert abs(measured.mean() - snr_db) < 0.1 and np.abs(measured - snr_db).max() < 1.5
    again = _all(build_condition(cfg), ds)
    assert all(np.array_equal(a, b) for a, b in zip(got, again))  # seeded per item


def test_options_are_checked_with_the_valid_values_named():
    with pytest.raises(ConfigError, match="valid: I, II, III, aVR"):
        build_condition(LeadsOptions(leads=["X1"]))
    with pytest.raises(ConfigError, match="snr_db"):
        build_condition(NoiseOptions(snr_db=float("nan")))
    with pytest.raises(ConfigError) as e:
        build(RunConfig(), overrides={"eval.conditions": ["real", {"type": "leads", "leads": ["I", "V7"]}, "shufled",
                                                          {"type": "noise", "snr_db": 500}]})  # fmt: skip
    problems = "\n".join(e.value.problems)
    assert "unknown condition 'shufled'; valid: leads, no_signal, noise, real, shuffled, zeros" in problems
    assert "eval.conditions[1] (leads): unknown leads ['V7']" in problems
    assert "(noise): snr_db must be a number in [-30, 100] dB, got 500" in problems
