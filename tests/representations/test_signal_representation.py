from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_bench.errors import DataError, ShapeError, UnknownNameError
from ecg_bench.representations.base import REPRESENTATIONS
from ecg_bench.representations.signal import SignalRepresentation, ZScoreRepresentation


def test_registered():
    assert REPRESENTATIONS.get("signal") is SignalRepresentation
    assert REPRESENTATIONS.get("signal_zscore") is ZScoreRepresentation
    with pytest.raises(UnknownNameError, match="signal"):
        REPRESENTATIONS.get("nope")


def test_per_lead_zscore_shape_and_flat_lead():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((12, 500)) * rng.uniform(0.1, 3, (12, 1)) + 5).astype(np.float32)
    x[3] = 0.7  # flat lead
    rep = ZScoreRepresentation()
    y = rep(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and tuple(y.shape) == rep.shape(500) == (12, 500)
    assert torch.isfinite(y).all()
    assert y[3].abs().max() < 1e-6
    others = torch.cat([y[:3], y[4:]])
    torch.testing.assert_close(others.mean(1), torch.zeros(11), atol=1e-5, rtol=0)
    torch.testing.assert_close(others.std(1, unbiased=False), torch.ones(11), atol=1e-4, rtol=0)


def test_millivolt_signal_keeps_amplitude_and_removes_offset():
    t = np.linspace(0, 2, 500, dtype=np.float32)
    x = np.stack([np.sin(2 * np.pi * t) * (0.2 + 0.1 * i) + 3.0 for i in range(12)]).astype(np.float32)
    x[5, 10] = 40.0  # one artefact far beyond any ECG amplitude
    y = SignalRepresentation(clip=5.0)(x)
    assert tuple(y.shape) == (12, 500) and y.dtype == torch.float32
    ptp = (y.max(1).values - y.min(1).values)[:5]
    torch.testing.assert_close(ptp, torch.tensor([0.4 + 0.2 * i for i in range(5)]), atol=0.01, rtol=0)
    assert abs(float(y[0].mean())) < 1e-5
    assert float(y[5].max()) == 5.0


@pytest.mark.parametrize("rep", [SignalRepresentation, ZScoreRepresentation])
@pytest.mark.parametrize("shape", [(11, 500), (12,), (1, 12, 500), (500, 12)])
def test_wrong_shape(rep, shape):
    with pytest.raises(ShapeError, match=r"\[12, L\]"):
        rep()(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("rep", [SignalRepresentation, ZScoreRepresentation])
def test_nan_rejected(rep):
    x = np.zeros((12, 100), dtype=np.float32)
    x[2, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        rep()(x)


def test_options():
    with pytest.raises(TypeError):
        SignalRepresentation(bogus=1)
    with pytest.raises(ValueError):
        ZScoreRepresentation(eps=0)
    with pytest.raises(ValueError):
        SignalRepresentation(clip=0)


def test_representations_declare_their_output_and_represent_signals():
    for name, rep in (("signal", SignalRepresentation()), ("signal_zscore", ZScoreRepresentation())):
        out = rep.output(500)
        assert (out.kind, out.shape, out.dtype, out.variable_length) == ("signal", (12, 500), torch.float32, False), name
        x = np.random.default_rng(1).standard_normal((3, 12, 500)).astype(np.float32)
        got = rep.represent(x)
        assert tuple(got.shape) == (3, *out.shape) and got.dtype == out.dtype
        assert not rep.represent(np.zeros_like(x)).any()  # the zeros condition: an all-zero input stays all-zero
