from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_bench.errors import DataError, ShapeError, UnknownNameError
from ecg_bench.representations.base import REPRESENTATIONS
from ecg_bench.representations.signal import SignalRepresentation


def test_registered():
    assert REPRESENTATIONS.get("signal") is SignalRepresentation
    with pytest.raises(UnknownNameError, match="signal"):
        REPRESENTATIONS.get("nope")


def test_per_lead_zscore_shape_and_flat_lead():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((12, 500)) * rng.uniform(0.1, 3, (12, 1)) + 5).astype(np.float32)
    x[3] = 0.7  # flat lead
    rep = SignalRepresentation()
    y = rep(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and tuple(y.shape) == rep.shape(500) == (12, 500)
    assert torch.isfinite(y).all()
    assert y[3].abs().max() < 1e-6
    others = torch.cat([y[:3], y[4:]])
    torch.testing.assert_close(others.mean(1), torch.zeros(11), atol=1e-5, rtol=0)
    torch.testing.assert_close(others.std(1, unbiased=False), torch.ones(11), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [(11, 500), (12,), (1, 12, 500), (500, 12)])
def test_wrong_shape(shape):
    with pytest.raises(ShapeError, match=r"\[12, L\]"):
        SignalRepresentation()(np.zeros(shape, dtype=np.float32))


def test_nan_rejected():
    x = np.zeros((12, 100), dtype=np.float32)
    x[2, 5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        SignalRepresentation()(x)


def test_options():
    with pytest.raises(TypeError):
        SignalRepresentation(bogus=1)
    with pytest.raises(ValueError):
        SignalRepresentation(eps=0)
