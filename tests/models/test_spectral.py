"""The ``spectral`` encoder's fixed features read heart rate and rhythm from real (synthetic) segments, and each
output token comes from its own feature group."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_bench.config import DataConfig, SourceOptions, choice
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.store import build_store
from ecg_bench.models.encoders.base import EncoderSpec
from ecg_bench.models.encoders.spectral import GROUPS, HR_CENTRES_BPM, SpectralEncoder, token_groups
from ecg_bench.representations.signal import SignalRepresentation


@pytest.fixture(scope="module")
def segments(tmp_path_factory):
    """5-s segments at 250 Hz of 60 synthetic records (all attributes balanced) and their ground truth."""
    cfg = DataConfig(source=choice(SourceOptions, "synthetic", num_patients=60, records_per_patient=1), seed=5)
    store = build_store(SOURCES.get("synthetic")(cfg), tmp_path_factory.mktemp("spectral") / "store", "synthetic", 250, 1250)
    rep = SignalRepresentation()
    x = torch.stack([rep(store.signal(i)) for i in range(len(store))])
    return x, [row["metadata"] for row in store.index]


def _encoder(num_tokens: int = 4, seq_len: int = 1250) -> SpectralEncoder:
    torch.manual_seed(0)
    return SpectralEncoder(EncoderSpec(in_leads=12, seq_len=seq_len, fs=250.0, num_tokens=num_tokens, out_dim=16), hidden=32)


def test_beat_features_give_the_heart_rate_and_the_rhythm(segments):
    x, meta = segments
    enc = _encoder()
    beats = enc.beat_features(enc.qrs_envelope(x.float()))
    k = len(HR_CENTRES_BPM)
    hr = 75.0 * torch.exp(beats[:, k]).numpy()  # log(rate / 75 bpm)
    cv = beats[:, k + 1].numpy()
    true = np.array([m["heart_rate"] for m in meta])
    regular = np.array([m["rhythm"] == "regular" for m in meta])
    # regular rhythms: the rate within 3 bpm (median); the category (60 / 100 bpm thresholds) right for nearly all
    assert np.median(np.abs(hr[regular] - true[regular])) < 3.0, np.abs(hr - true)[regular]
    category = np.digitize(hr, [60.0, 100.0])
    assert (category == np.digitize(true, [60.0, 100.0]))[regular].mean() > 0.95
    # irregular (AF-like) RR intervals: a much larger coefficient of variation than regular ones, noisy or not
    assert np.median(cv[~regular]) > 4 * np.median(cv[regular])
    assert ((cv > 0.06) == ~regular).mean() > 0.85
    # the soft one-hot peaks at the bump nearest the measured rate
    nearest = np.abs(np.array(HR_CENTRES_BPM)[None, :] - hr[:, None]).argmin(1)
    assert (beats[:, :k].argmax(1).numpy() == nearest).all()


def test_features_are_finite_on_flat_and_short_segments():
    enc = _encoder(seq_len=500)
    x = torch.zeros(2, 12, 500)
    x[1] = torch.randn(12, 500)
    f = enc.features(x)
    assert torch.isfinite(f).all() and enc(x).shape == (2, 4, 16)


def test_each_token_reads_its_own_feature_group(segments):
    """Changing only the beat features changes only the beats token (the 4th of 4)."""
    x, _ = segments
    enc = _encoder().eval()
    f = enc.features(x[:4])
    g = enc.group_slices[GROUPS.index("beats")]
    with torch.no_grad():
        base = enc.tokens(f)
        f2 = f.clone()
        f2[:, g] += 1.0
        moved = enc.tokens(f2)
    changed = (moved - base).abs().amax(dim=(0, 2))
    assert changed[GROUPS.index("beats")] > 0 and (changed[[0, 1, 2]] == 0).all()


def test_token_groups_cover_every_group():
    assert token_groups(4, 4) == [[0], [1], [2], [3]]
    assert token_groups(1, 4) == [[0, 1, 2, 3]]
    assert token_groups(2, 4) == [[0, 2], [1, 3]]
    assert token_groups(6, 4) == [[0], [1], [2], [3], [0], [1]]
    for n in range(1, 9):
        assert {g for gs in token_groups(n, 4) for g in gs} == {0, 1, 2, 3}
