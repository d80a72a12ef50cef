"""Training stops at the first non-finite loss or gradient norm, naming the step and the value."""

from __future__ import annotations

import pytest
import torch
from elm_fixtures import make_tiny_elm

from ecg_bench.config import RunConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.errors import ECGBenchError
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.training.trainer import NonFiniteError, Trainer
from ecg_bench.config import EncoderOptions, choice


def _trainer(tiny_store, tiny_items, out, **train):
    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    for k, v in {"max_steps": 4, "batch_size": 4, "log_every": 1, **train}.items():
        setattr(cfg.train, k, v)
    elm, proc = make_tiny_elm()
    return Trainer(elm, proc, ConversationDataset(tiny_items, tiny_store, SignalRepresentation()), cfg, out)


def test_nan_injected_by_a_hook_stops_at_that_step_without_updating(tiny_store, tiny_items, tmp_path):
    tr = _trainer(tiny_store, tiny_items, tmp_path / "ckpt", max_steps=4)
    calls = {"n": 0}

    def poison(module, args, output):  # the 3rd forward (step 3 with one micro-batch per step) turns NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 3 else output

    projector = tr.elm.trainable_modules()["projector"]
    projector.register_forward_hook(poison)
    before = {}

    def snapshot(module, args, output):
        if calls["n"] == 3:
            before.update({n: p.detach().clone() for n, p in tr.elm.named_parameters() if p.requires_grad})

    projector.register_forward_hook(snapshot)
    with pytest.raises(NonFiniteError) as e:
        tr.train()
    assert isinstance(e.value, ECGBenchError)
    assert "step 3/4" in str(e.value) and "nan" in str(e.value)
    assert tr.step == 2 and len(tr.losses) == 2
    for name, p in tr.elm.named_parameters():  # the poisoned step was not applied
        if name in before:
            assert torch.isfinite(p).all() and torch.equal(p, before[name]), name
    assert not (tmp_path / "ckpt" / "final").exists()


def test_a_learning_rate_that_overflows_stops_training(tiny_store, tiny_items, tmp_path):
    tr = _trainer(tiny_store, tiny_items, tmp_path / "ckpt", max_steps=6, lr=1e30, encoder_lr=1e30, warmup_ratio=0.0)
    with pytest.raises(NonFiniteError, match=r"training stopped at step [2-6]/6: loss (nan|inf)"):
        tr.train()
    assert 1 <= tr.step < 6
