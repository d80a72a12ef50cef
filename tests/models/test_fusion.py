"""PlaceholderFusion: ECG embeddings land exactly at placeholder positions, in order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecg_bench.errors import ShapeError
from ecg_bench.models.fusion import PlaceholderFusion

PH = 50  # placeholder id past the 20-row embedding table, as for a real added token


@pytest.fixture
def embed():
    torch.manual_seed(0)
    return nn.Embedding(20, 4)


def test_several_tokens_per_sample_and_left_padding(embed):
    pad = 0
    ids = torch.tensor(
        [
            [pad, pad, 3, PH, PH, PH, 7],  # left padded, 3 ECG tokens
            [5, PH, PH, PH, 8, 9, 10],
        ]
    )
    ecg = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4) + 100
    out = PlaceholderFusion(PH)(ids, embed, ecg)
    assert out.shape == (2, 7, 4)
    torch.testing.assert_close(out[0, 3:6], ecg[0])
    torch.testing.assert_close(out[1, 1:4], ecg[1])
    # every other position is the ordinary token embedding
    torch.testing.assert_close(out[0, :3], embed(ids[0, :3]))
    torch.testing.assert_close(out[1, 4:], embed(ids[1, 4:]))


def test_two_ecgs_in_one_sample_flat_input(embed):
    ids = torch.tensor([[1, PH, PH, 2, PH, PH, 3]])
    flat = torch.randn(4, 4)  # two ECGs x two tokens, flattened in order
    out = PlaceholderFusion(PH)(ids, embed, flat)
    torch.testing.assert_close(out[0, [1, 2, 4, 5]], flat)


def test_gradient_reaches_ecg_embeddings(embed):
    ids = torch.tensor([[1, PH, 2]])
    ecg = torch.randn(1, 1, 4, requires_grad=True)
    PlaceholderFusion(PH)(ids, embed, ecg).sum().backward()
    torch.testing.assert_close(ecg.grad, torch.ones_like(ecg))


def test_count_mismatch_names_expected(embed):
    ids = torch.tensor([[1, PH, PH, 2]])
    with pytest.raises(ShapeError, match="2 rows"):
        PlaceholderFusion(PH)(ids, embed, torch.randn(1, 3, 4))
    with pytest.raises(ShapeError, match="placeholder"):
        PlaceholderFusion(PH)(ids, embed, None)


def test_no_placeholders_no_ecg(embed):
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(PlaceholderFusion(PH)(ids, embed, None), embed(ids))
